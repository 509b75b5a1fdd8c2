//! Keys at the door, against the real server on a loopback port: no key, a wrong key, a right
//! key, several keys from a file and an environment variable, a key file changed on disk and
//! reloaded (by polling and by SIGHUP), open or protected operational routes, and `/info`
//! describing the sources without a key.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{default_manifest, solid_b64, TestServer};
use psr_reward::config::Config;
use psr_reward::server::auth::AuthConfig;
use serde_json::json;

const KEY_A: &str = "key-a-0123456789abcdef";
const KEY_B: &str = "key-b-0123456789abcdef";
const KEY_ENV: &str = "key-env-0123456789abcdef";

/// A fresh folder for one test's key file.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("psr-auth-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server whose keys come from `file` (polled every `reload_ms`).
async fn server(file: &Path, reload_ms: u64, protect_operational: bool) -> TestServer {
    let config = Config {
        auth: AuthConfig {
            keys_file: Some(file.to_path_buf()),
            protect_operational,
            reload_interval_ms: reload_ms,
            ..AuthConfig::default()
        },
        ..Config::default()
    };
    config.validate().unwrap();
    TestServer::start_with(default_manifest(), config).await
}

/// Status and JSON body of `method path` with an optional bearer key.
async fn call(
    s: &TestServer,
    path: &str,
    key: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = if path.starts_with("/v1/") {
        s.client
            .post(s.url(path))
            .json(&json!({"images": [solid_b64(32, 32, [200, 40, 40])]}))
    } else {
        s.client.get(s.url(path))
    };
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

fn assert_unauthorized(status: u16, headers: &reqwest::header::HeaderMap, body: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error_type"], "unauthorized", "{v}");
    assert!(v["error"].as_str().unwrap().contains("Bearer"), "{v}");
}

/// Polls until `key` gets `want` on /v1/embed, or fails after 10 s.
async fn wait_for(s: &TestServer, key: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = call(s, "/v1/embed", Some(key)).await;
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {status} ({body})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_wrong_key_and_right_key() {
    let dir = temp_dir("basic");
    let file = dir.join("keys");
    std::fs::write(&file, format!("# two keys\n{KEY_A}\n\n  {KEY_B}  \n")).unwrap();
    let s = server(&file, 60_000, false).await;

    for path in ["/v1/embed", "/v1/reward", "/info", "/no-such-route"] {
        let (status, headers, body) = call(&s, path, None).await;
        assert_unauthorized(status, &headers, &body);
    }
    for wrong in [
        "key-a-0123456789abcde",
        "key-a-0123456789abcdeg",
        "",
        "Bearer",
    ] {
        let (status, headers, body) = call(&s, "/v1/embed", Some(wrong)).await;
        assert_unauthorized(status, &headers, &body);
    }
    // Not the bearer scheme: refused even with a right key.
    let resp = s
        .client
        .get(s.url("/info"))
        .header("authorization", format!("Basic {KEY_A}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    for key in [KEY_A, KEY_B] {
        let (status, _, body) = call(&s, "/v1/embed", Some(key)).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["embeddings"].as_array().unwrap().len(), 1);
    }
    // Behind the door the routes answer as usual (404 stays 404).
    assert_eq!(call(&s, "/no-such-route", Some(KEY_A)).await.0, 404);

    // /info names the source and the count, never a key.
    let (status, _, body) = call(&s, "/info", Some(KEY_A)).await;
    assert_eq!(status, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["auth"]["keys"], 2, "{}", info["auth"]);
    assert_eq!(info["auth"]["keys_file"], file.display().to_string());
    assert_eq!(info["auth"]["protect_operational"], false);
    assert!(!body.contains(KEY_A) && !body.contains(KEY_B));

    // Refusals are counted like every answer.
    let metrics = call(&s, "/metrics", None).await.2;
    assert!(
        metrics.contains(r#"psr_reward_requests_total{route="/v1/embed",status="401"} 5"#),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("401"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    s.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_routes_open_by_default_and_protected_by_config() {
    let dir = temp_dir("operational");
    let file = dir.join("keys");
    std::fs::write(&file, format!("{KEY_A}\n")).unwrap();

    let open = server(&file, 60_000, false).await;
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        let (status, _, body) = call(&open, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    open.stop().await;

    let closed = server(&file, 60_000, true).await;
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        let (status, headers, body) = call(&closed, path, None).await;
        assert_unauthorized(status, &headers, &body);
        let (status, _, body) = call(&closed, path, Some(KEY_A)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, _, metrics) = call(&closed, "/metrics", Some(KEY_A)).await;
    assert!(metrics.contains("psr_reward_ready 1"), "{metrics}");
    closed.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_file_changes_are_reloaded_and_a_broken_file_keeps_the_old_keys() {
    let dir = temp_dir("reload");
    let file = dir.join("keys");
    std::fs::write(&file, format!("{KEY_A}\n")).unwrap();
    let s = server(&file, 100, false).await;
    wait_for(&s, KEY_A, 200).await;
    assert_eq!(call(&s, "/v1/embed", Some(KEY_B)).await.0, 401);

    // Rotate: as a Kubernetes Secret update does, replace the file by a rename.
    let next = dir.join("keys.new");
    std::fs::write(&next, format!("{KEY_B}\n")).unwrap();
    std::fs::rename(&next, &file).unwrap();
    wait_for(&s, KEY_B, 200).await;
    assert_eq!(call(&s, "/v1/embed", Some(KEY_A)).await.0, 401);

    // A file with no usable key (or none at all) is not loaded: KEY_B stays valid.
    std::fs::write(&file, "# emptied by mistake\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(call(&s, "/v1/embed", Some(KEY_B)).await.0, 200);
    std::fs::remove_file(&file).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(call(&s, "/v1/embed", Some(KEY_B)).await.0, 200);
    s.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_env_keys_count_too() {
    let dir = temp_dir("sighup");
    let file = dir.join("keys");
    std::fs::write(&file, format!("{KEY_A}\n")).unwrap();
    // SAFETY: only this test reads this variable, and it is set before the server starts.
    unsafe {
        std::env::set_var(
            "PSR_AUTH_TEST_ENV_KEYS",
            format!("{KEY_ENV}, other-env-key-0123456789"),
        )
    };
    let config = Config {
        auth: AuthConfig {
            keys_file: Some(file.clone()),
            keys_env: Some("PSR_AUTH_TEST_ENV_KEYS".into()),
            // Polling would notice the change after a minute: only SIGHUP can reload it here.
            reload_interval_ms: 60_000,
            ..AuthConfig::default()
        },
        ..Config::default()
    };
    let s = TestServer::start_with(default_manifest(), config).await;
    assert_eq!(call(&s, "/v1/embed", Some(KEY_ENV)).await.0, 200);
    assert_eq!(call(&s, "/v1/embed", Some(KEY_A)).await.0, 200);
    let info: serde_json::Value =
        serde_json::from_str(&call(&s, "/info", Some(KEY_A)).await.2).unwrap();
    assert_eq!(info["auth"]["keys"], 3);
    assert_eq!(info["auth"]["keys_env"], "PSR_AUTH_TEST_ENV_KEYS");

    std::fs::write(&file, format!("{KEY_B}\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        call(&s, "/v1/embed", Some(KEY_B)).await.0,
        401,
        "reloaded without a signal"
    );
    let killed = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for(&s, KEY_B, 200).await;
    assert_eq!(call(&s, "/v1/embed", Some(KEY_A)).await.0, 401);
    assert_eq!(call(&s, "/v1/embed", Some(KEY_ENV)).await.0, 200);
    s.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
