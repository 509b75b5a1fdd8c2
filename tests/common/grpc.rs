//! The gRPC API of a [`TestServer`](super::TestServer): the real gRPC router on its own
//! loopback port over the same state, and a tonic client on hyper's HTTP/2 client (which,
//! unlike tonic's channel, leaves deadlines to the server).

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use psr_reward::models::manifest::Manifest;
use psr_reward::server::grpc::{self, pb};
use psr_reward::server::AppState;
use serde_json::{json, Value};
use tonic_types::StatusExt;

use super::{b64, default_manifest, png, scene, TestServer};

/// The HTTP/2 connection the clients share.
pub type Http2 = Client<HttpConnector, tonic::body::Body>;
/// The RewardService client.
pub type RewardClient = pb::reward_service_client::RewardServiceClient<Http2>;

/// A running gRPC listener.
pub struct GrpcServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl GrpcServer {
    /// Serves the gRPC API of `state` on 127.0.0.1:0.
    pub async fn start(state: &AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(grpc::serve(
            listener,
            state.clone(),
            async move {
                let _ = stopped.await;
            },
            std::time::Duration::from_secs(5),
        ));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The origin clients call.
    pub fn origin(&self) -> tonic::codegen::http::Uri {
        format!("http://{}", self.addr).parse().unwrap()
    }

    /// An HTTP/2 (prior knowledge) connection pool to the server.
    pub fn http2(&self) -> Http2 {
        Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http()
    }

    /// A RewardService client (no message size limit of its own).
    pub fn client(&self) -> RewardClient {
        RewardClient::with_origin(self.http2(), self.origin())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// Stops serving (the models stay with the HTTP server).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// The `error_type` a status carries in its `google.rpc.ErrorInfo`.
pub fn error_type(status: &tonic::Status) -> String {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, grpc::DOMAIN);
    info.reason.clone()
}

// -- shared scenes and requests of the gRPC tests ------------------------------------------

pub const RED: [u8; 3] = [230, 20, 20];
pub const BLUE: [u8; 3] = [20, 20, 230];

/// A scene with a red and a blue square, and references of each, as PNG bytes.
pub fn images(shift: u32) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let generated = png(&scene(
        320,
        240,
        &[
            (20 + shift, 30, 120 + shift, 110, RED),
            (180, 100 + shift / 2, 280, 200, BLUE),
        ],
    ));
    let reference = |c| png(&scene(200, 200, &[(50, 50, 150, 150, c)]));
    (generated, reference(RED), reference(BLUE))
}

/// A reward item of [`images`] (`shift` moves the red square) with its raw bytes.
pub fn grpc_item(shift: u32) -> pb::RewardItem {
    let (scene, red, blue) = images(shift);
    let subject = |name: &str, image| pb::Subject {
        name: name.into(),
        reference: Some(pb::subject::Reference::ReferenceImage(image)),
    };
    pb::RewardItem {
        image: scene,
        prompt: "a red square to the left of a blue square".into(),
        subjects: vec![subject("red", red), subject("blue", blue)],
        task: None,
    }
}

/// The same item as the HTTP API takes it (base64).
pub fn http_item(shift: u32) -> Value {
    let (scene, red, blue) = images(shift);
    json!({"image": b64(&scene), "prompt": "a red square to the left of a blue square",
        "subjects": [{"name": "red", "reference": b64(&red)}, {"name": "blue", "reference": b64(&blue)}]})
}

/// Subject consistency, aesthetic and position, all served by the fixture models.
pub fn weights() -> std::collections::HashMap<String, f64> {
    [
        ("subject_consistency", 0.4),
        ("aesthetic", 0.2),
        ("position", 0.4),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub fn slow_embedder(delay_ms: u64) -> Manifest {
    let mut m = default_manifest();
    m.embedder.as_mut().unwrap().batching.max_queue_delay_ms = delay_ms;
    m
}

pub const EMBEDDER_DROPPED: &str =
    r#"psr_reward_batcher_failures_total{model="fixture-embedder",reason="dropped"}"#;
pub const EMBEDDER_ITEMS: &str = r#"psr_reward_inference_items_total{model="fixture-embedder"}"#;
pub const EMBEDDER_QUEUE: &str = r#"psr_reward_queue_depth{model="fixture-embedder"}"#;

pub async fn wait_metric(s: &TestServer, name: &str, pass: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..500 {
        let v = s.metric(name).await;
        if pass(v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} never passed (now {})", s.metric(name).await);
}
