//! Where samples are scored: the service's own router in this process (no socket, same
//! middleware, handlers and engine as `serve`), or running services over HTTP (`--url`,
//! one or several, taken in turn). Both take the same request bytes and give back the same
//! response bytes, so the two modes cannot disagree.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request};
use tower::ServiceExt;

use crate::server::AppState;

/// A response: status, `Retry-After` seconds if any, body.
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: Vec<u8>,
}

/// The scoring service, in process or remote.
#[derive(Clone)]
pub enum Backend {
    /// The router `serve` runs, called without a socket.
    InProcess {
        router: axum::Router,
        state: AppState,
    },
    /// Running services, each request to the next URL in turn.
    Remote {
        client: reqwest::Client,
        urls: Arc<Vec<String>>,
        next: Arc<AtomicUsize>,
        api_key: Option<String>,
    },
}

impl Backend {
    /// The in-process service over `state` (models loaded and warmed). API keys are not
    /// asked at this door: nothing outside the process can reach it.
    pub fn in_process(state: AppState) -> Self {
        Self::InProcess {
            router: crate::server::router(state.clone()),
            state,
        }
    }

    /// Running services at `urls` (`http://host:port`), with an optional API key.
    pub fn remote(urls: Vec<String>, api_key: Option<String>) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("no --url given".into());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self::Remote {
            client,
            urls: Arc::new(
                urls.into_iter()
                    .map(|u| u.trim_end_matches('/').to_string())
                    .collect(),
            ),
            next: Arc::new(AtomicUsize::new(0)),
            api_key,
        })
    }

    /// How many services answer (each `/info` is checked).
    pub fn targets(&self) -> Vec<String> {
        match self {
            Backend::InProcess { .. } => vec!["in-process".to_string()],
            Backend::Remote { urls, .. } => urls.to_vec(),
        }
    }

    /// `GET path` on service `target` (an index into [`Backend::targets`]).
    pub async fn get(&self, target: usize, path: &str) -> Result<Reply, String> {
        match self {
            Backend::InProcess { router, .. } => {
                let req = Request::builder()
                    .method(Method::GET)
                    .uri(path)
                    .body(Body::empty())
                    .map_err(|e| e.to_string())?;
                call(router, req).await
            }
            Backend::Remote {
                client,
                urls,
                api_key,
                ..
            } => {
                let url = format!("{}{path}", urls[target % urls.len()]);
                send(client.get(&url), api_key, &url).await
            }
        }
    }

    /// `POST path` with a JSON body, to the next service in turn.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Result<Reply, String> {
        match self {
            Backend::InProcess { router, .. } => {
                let req = Request::builder()
                    .method(Method::POST)
                    .uri(path)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .map_err(|e| e.to_string())?;
                call(router, req).await
            }
            Backend::Remote {
                client,
                urls,
                next,
                api_key,
            } => {
                let url = format!(
                    "{}{path}",
                    urls[next.fetch_add(1, Ordering::Relaxed) % urls.len()]
                );
                let req = client
                    .post(&url)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body);
                send(req, api_key, &url).await
            }
        }
    }

    /// The in-process state, when scoring in process.
    pub fn state(&self) -> Option<&AppState> {
        match self {
            Backend::InProcess { state, .. } => Some(state),
            Backend::Remote { .. } => None,
        }
    }
}

async fn call(router: &axum::Router, req: Request<Body>) -> Result<Reply, String> {
    let resp = router
        .clone()
        .oneshot(req)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    Ok(Reply {
        status,
        retry_after,
        body: body.to_vec(),
    })
}

async fn send(
    req: reqwest::RequestBuilder,
    api_key: &Option<String>,
    url: &str,
) -> Result<Reply, String> {
    let req = match api_key {
        Some(k) => req.bearer_auth(k),
        None => req,
    };
    let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("{url}: cannot read the answer: {e}"))?;
    Ok(Reply {
        status,
        retry_after,
        body: body.to_vec(),
    })
}

fn retry_after(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
