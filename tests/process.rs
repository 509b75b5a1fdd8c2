//! The real binary: start-up errors, readiness after warm-up, and graceful shutdown on SIGTERM.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use psr_reward::models::manifest::Manifest;
use serde_json::json;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_psr-reward"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ort_library() -> String {
    std::env::var("PSR_ORT_LIBRARY").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".deps/libonnxruntime.so")
            .display()
            .to_string()
    })
}

#[test]
fn missing_onnxruntime_library_is_a_clear_startup_error() {
    let out = binary()
        .args(["models", "check"])
        .env("PSR_ORT_LIBRARY", "/nonexistent/libonnxruntime.so")
        .env(
            "PSR_MODELS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.toml"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so"),
        "{stderr}"
    );
    assert!(stderr.contains("make setup"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn invalid_config_names_the_field() {
    let dir = std::env::temp_dir().join(format!("psr-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[limits]\npriority_levels = 0\n").unwrap();
    let out = binary()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("limits.priority_levels"), "{stderr}");
}

struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Starts `psr-reward serve` on a manifest whose embedder waits `delay_ms` for batches.
fn start_service(delay_ms: u64) -> Service {
    start_service_with(&format!("delay{delay_ms}"), |m| {
        m.embedder.as_mut().unwrap().batching.max_queue_delay_ms = delay_ms;
    })
}

/// Starts `psr-reward serve` on the fixture manifest changed by `edit` (`tag` names its
/// temporary folder).
fn start_service_with(tag: &str, edit: impl FnOnce(&mut Manifest)) -> Service {
    let mut manifest = default_manifest();
    edit(&mut manifest);
    let dir = std::env::temp_dir().join(format!("psr-proc-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("manifest.toml");
    std::fs::write(&path, toml::to_string(&manifest).unwrap()).unwrap();
    let port = free_port();
    let child = binary()
        .arg("serve")
        .env("PORT", port.to_string())
        .env("PSR_HOST", "127.0.0.1")
        .env("PSR_MODELS", &path)
        .env("PSR_ORT_LIBRARY", ort_library())
        .env("PSR_JSON_LOGS", "true")
        .env("PSR_SHUTDOWN_GRACE_SECS", GRACE_SECS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Service {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// The shutdown grace period the services get.
const GRACE_SECS: u64 = 20;

/// Waits until `/ready` answers 200 (it must be 503 before).
async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "never became ready");
        if let Ok(r) = client.get(format!("{base}/ready")).send().await {
            if r.status() == 200 {
                return;
            }
            assert_eq!(r.status(), 503, "ready must be 503 before warm-up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM to the service.
/// `GET /info` as JSON.
async fn get_info(client: &reqwest::Client, base: &str) -> serde_json::Value {
    client
        .get(format!("{base}/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn sigterm(svc: &Service) {
    let pid = svc.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
}

/// Waits for the process to exit; returns its status and its stdout (the JSON logs).
async fn wait_exit(mut svc: Service) -> (std::process::ExitStatus, String) {
    tokio::task::spawn_blocking(move || {
        let status = svc.child.wait().unwrap();
        let mut logs = String::new();
        svc.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut logs)
            .unwrap();
        (status, logs)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_after_warm_up_and_drains_on_sigterm() {
    let svc = start_service(1500);
    let client = reqwest::Client::new();
    wait_ready(&client, &svc.base).await;
    let info = get_info(&client, &svc.base).await;
    assert_eq!(info["models"].as_array().unwrap().len(), 3);

    // An in-flight request (waiting 1.5 s for its batch) must complete after SIGTERM.
    let url = format!("{}/v1/embed", svc.base);
    let in_flight = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .json(&json!({"images": [solid_b64(32, 32, [255, 0, 0])]}))
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&svc);
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dimensions"], 384);

    let exit = wait_exit(svc).await;
    assert_eq!(exit.0.code(), Some(0), "{}", exit.1);
    assert!(exit.1.contains("draining"), "{}", exit.1);
    assert!(exit.1.contains("shut down cleanly"), "{}", exit.1);
    // JSON log lines.
    let first: serde_json::Value = serde_json::from_str(exit.1.lines().next().unwrap()).unwrap();
    assert!(first["level"].is_string());
}

/// The answer to one request: status and JSON body, or why there was none.
type Answer = Result<(u16, serde_json::Value), String>;

/// Starts a `/v1/embed` request on a raw connection and sends its head and the first half
/// of its body now; the task sends the rest when `go` fires and returns the answer.
async fn slow_upload(
    base: &str,
    image: String,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Answer>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({ "images": [image] }).to_string().into_bytes();
    let head = format!(
        "POST /v1/embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    let rest = rest.to_vec();
    let (go, ready) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = ready.await;
        stream
            .write_all(&rest)
            .await
            .map_err(|e| format!("slow upload: connection dropped mid-body: {e}"))?;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out))
            .await
            .map_err(|_| "slow upload: no answer in 30 s".to_string())?
            .map_err(|e| format!("slow upload: {e}"))?;
        let text = String::from_utf8_lossy(&out).to_string();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("slow upload: no HTTP answer: {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("slow upload: bad status line: {head}"))?;
        let json = serde_json::from_str(body)
            .map_err(|e| format!("slow upload: body not JSON ({e}): {body:?}"))?;
        Ok((status, json))
    });
    (go, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_accepted_request() {
    // The embedder takes batches of up to 64 and waits 5 s to fill one, so 40 requests all
    // sit in its queue together when the signal comes. Four more are still uploading their
    // bodies then: accepted too, they finish uploading during the drain.
    const REQUESTS: usize = 40;
    const UPLOADING: usize = 4;
    let svc = start_service_with("load", |m| {
        let batching = &mut m.embedder.as_mut().unwrap().batching;
        batching.max_batch_size = 64;
        batching.max_queue_delay_ms = 5000;
    });
    let client = reqwest::Client::new();
    wait_ready(&client, &svc.base).await;

    let mut calls = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let (client, url) = (client.clone(), format!("{}/v1/embed", svc.base));
        let image = solid_b64(32, 32, [(i * 6) as u8, 255 - (i * 6) as u8, 40]);
        calls.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .json(&json!({ "images": [image] }))
                .send()
                .await
                .map_err(|e| format!("request {i}: no HTTP answer: {e}"))?;
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| format!("request {i}: body cut or not JSON: {e}"))?;
            Ok::<_, String>((status, body))
        }));
    }
    let mut uploads = Vec::with_capacity(UPLOADING);
    for i in 0..UPLOADING {
        uploads.push(slow_upload(&svc.base, solid_b64(32, 32, [9, 9, 60 * i as u8])).await);
    }
    // Every request is accepted and admitted before the signal: /info counts them.
    let admitted_by = Instant::now() + Duration::from_secs(4);
    loop {
        let info = get_info(&client, &svc.base).await;
        if info["in_flight"]["requests"].as_u64() == Some((REQUESTS + UPLOADING) as u64) {
            break;
        }
        assert!(
            Instant::now() < admitted_by,
            "the requests were not all in flight: {}",
            info["in_flight"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    sigterm(&svc);

    // The uploads end after the signal (draining has begun), on their accepted connections.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut answers = Vec::with_capacity(REQUESTS + UPLOADING);
    let mut pending = Vec::with_capacity(UPLOADING);
    for (go, task) in uploads {
        let _ = go.send(());
        pending.push(task);
    }
    for task in calls.into_iter().chain(pending) {
        answers.push(task.await.unwrap());
    }
    let (mut ok, mut not_ready) = (0, 0);
    for answer in answers {
        match answer {
            Ok((200, body)) => {
                assert_eq!(body["dimensions"], 384, "{body}");
                ok += 1;
            }
            Ok((503, body)) => {
                assert_eq!(body["error_type"], "not_ready", "{body}");
                not_ready += 1;
            }
            Ok((status, body)) => panic!("an accepted request got {status}: {body}"),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok + not_ready, REQUESTS + UPLOADING);

    let (status, logs) = wait_exit(svc).await;
    let took = signalled.elapsed();
    println!("SIGTERM under load: {ok} x 200, {not_ready} x 503; exited after {took:.1?}");
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(
        took < Duration::from_secs(GRACE_SECS),
        "exit took {took:?}, over the grace period"
    );
    assert!(logs.contains("shut down cleanly"), "{logs}");
    assert!(!logs.contains("grace period over"), "{logs}");
}
