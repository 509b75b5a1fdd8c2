//! The `RewardService` RPCs: each parses its message into the request the HTTP route would
//! build, holds a request slot (`limits.max_concurrent_requests`) while it runs, and calls
//! the same code as the route.

use std::time::Instant;

use tonic::{Request, Response, Status};

use super::convert;
use super::edge::{timeout_ms, Call};
use super::pb::{self, reward_service_server::RewardService};
use super::stream::{self, RewardStream};
use crate::reward::engine;
use crate::server::error::ApiError;
use crate::server::images::ImageSource;
use crate::server::reward_input::{self, RewardBody, RewardInput};
use crate::server::routes::detect::{self, DetectBody, DetectInput};
use crate::server::routes::embed::{self, EmbedBody, EmbedInput};
use crate::server::routes::info;
use crate::server::state::AppState;

/// The full method paths: the `route` label of their metrics.
pub const METHODS: [&str; 5] = [REWARD, STREAM_REWARDS, DETECT, EMBED, INFO];
const REWARD: &str = "/psr_reward.v1.RewardService/Reward";
const STREAM_REWARDS: &str = "/psr_reward.v1.RewardService/StreamRewards";
const DETECT: &str = "/psr_reward.v1.RewardService/Detect";
const EMBED: &str = "/psr_reward.v1.RewardService/Embed";
const INFO: &str = "/psr_reward.v1.RewardService/Info";

/// The service over the shared state.
pub struct Service {
    state: AppState,
}

impl Service {
    /// The RPCs over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A reward message with the deadline of its call.
pub struct RewardCall {
    pub message: pb::RewardRequest,
    pub timeout_ms: Option<u64>,
}

impl RewardBody for RewardCall {
    fn with_input<R>(
        &self,
        f: impl FnOnce(RewardInput<'_>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        f(convert::reward_input(&self.message, self.timeout_ms)?)
    }
}

struct DetectCall(pb::DetectRequest, Option<u64>);

impl DetectBody for DetectCall {
    fn with_input<R>(
        &self,
        f: impl FnOnce(DetectInput<'_>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        f(DetectInput {
            images: self.0.images.iter().map(|b| ImageSource::Raw(b)).collect(),
            phrases: self.0.phrases.clone(),
            box_threshold: self.0.box_threshold,
            timeout_ms: self.1,
            priority: convert::priority(self.0.priority)?,
            // Not in the proto yet: the default, equal shapes.
            batching: None,
        })
    }
}

struct EmbedCall(pb::EmbedRequest, Option<u64>);

impl EmbedBody for EmbedCall {
    fn with_input<R>(
        &self,
        f: impl FnOnce(EmbedInput<'_>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        f(EmbedInput {
            images: self.0.images.iter().map(|b| ImageSource::Raw(b)).collect(),
            timeout_ms: self.1,
            priority: convert::priority(self.0.priority)?,
        })
    }
}

impl Service {
    async fn reward_call(
        &self,
        req: Request<pb::RewardRequest>,
    ) -> Result<pb::RewardResponse, ApiError> {
        let arrived = Instant::now();
        let _slot = self.state.admission().request()?;
        let services = reward_input::services(&self.state)?;
        let timeout_ms = timeout_ms(&req, &self.state.config().limits)?;
        let body = RewardCall {
            message: req.into_inner(),
            timeout_ms,
        };
        let (decoded, decode_time) =
            reward_input::decode_on_pool(&self.state, arrived, REWARD, body).await?;
        let (results, stages) = engine::compute(&services, decoded.items, &decoded.plan).await?;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Ok(pb::RewardResponse {
            results: results.into_iter().map(convert::item_reward).collect(),
            options: Some(convert::options(&decoded.plan.options)),
            timing: Some(pb::RewardTiming {
                total_ms: ms(arrived.elapsed()),
                decode_ms: ms(decode_time),
                detection_ms: ms(stages.detection),
                embedding_ms: ms(stages.embedding),
            }),
        })
    }

    async fn detect_call(
        &self,
        req: Request<pb::DetectRequest>,
    ) -> Result<pb::DetectResponse, ApiError> {
        let arrived = Instant::now();
        let _slot = self.state.admission().request()?;
        let timeout_ms = timeout_ms(&req, &self.state.config().limits)?;
        let body = DetectCall(req.into_inner(), timeout_ms);
        let (out, _) = detect::run(&self.state, arrived, DETECT, body).await?;
        Ok(pb::DetectResponse {
            model: out.model,
            box_threshold: out.box_threshold,
            results: out
                .results
                .into_iter()
                .map(|image| pb::ImageDetections {
                    width: image.width,
                    height: image.height,
                    phrases: image
                        .phrases
                        .into_iter()
                        .map(|p| pb::PhraseDetections {
                            phrase: p.phrase,
                            caption: p.caption,
                            detections: p
                                .detections
                                .into_iter()
                                .map(|d| pb::Detection {
                                    query: u32::try_from(d.query).unwrap_or(u32::MAX),
                                    score: d.score,
                                    r#box: Some(pb::DetectionBox {
                                        x1: d.bbox[0],
                                        y1: d.bbox[1],
                                        x2: d.bbox[2],
                                        y2: d.bbox[3],
                                    }),
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        })
    }

    async fn embed_call(
        &self,
        req: Request<pb::EmbedRequest>,
    ) -> Result<pb::EmbedResponse, ApiError> {
        let arrived = Instant::now();
        let _slot = self.state.admission().request()?;
        let timeout_ms = timeout_ms(&req, &self.state.config().limits)?;
        let body = EmbedCall(req.into_inner(), timeout_ms);
        let (out, _) = embed::run(&self.state, arrived, EMBED, body).await?;
        Ok(pb::EmbedResponse {
            model: out.model,
            dimensions: u32::try_from(out.dimensions).unwrap_or(u32::MAX),
            embeddings: out
                .embeddings
                .into_iter()
                .map(|values| pb::Embedding { values })
                .collect(),
        })
    }

    fn info_call(&self) -> Result<pb::InfoResponse, ApiError> {
        let doc = info::describe(&self.state);
        let info_json =
            serde_json::to_string(&doc).map_err(|e| ApiError::internal(e.to_string()))?;
        let l = &doc.limits;
        let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(pb::InfoResponse {
            name: doc.name.to_string(),
            version: doc.version.to_string(),
            ready: doc.ready,
            limits: Some(pb::ClientLimits {
                max_items_per_request: to_u32(l.max_items_per_request),
                max_message_bytes: l.max_body_bytes as u64,
                max_image_bytes: l.max_image_bytes as u64,
                max_request_pixels: l.max_request_pixels,
                max_timeout_ms: l.max_timeout_ms,
                max_subjects: to_u32(doc.reward_limits.max_subjects),
                max_prompt_chars: to_u32(doc.reward_limits.max_prompt_chars),
                max_phrases: to_u32(l.max_phrases),
            }),
            models: doc
                .models
                .iter()
                .map(|m| pb::ModelSummary {
                    name: m.name.clone(),
                    role: m.role.to_string(),
                    providers: m.instances.iter().map(|p| p.actual.to_string()).collect(),
                })
                .collect(),
            info_json,
        })
    }
}

#[tonic::async_trait]
impl RewardService for Service {
    async fn reward(
        &self,
        req: Request<pb::RewardRequest>,
    ) -> Result<Response<pb::RewardResponse>, Status> {
        let call = Call::start(&self.state, REWARD);
        call.finish(
            self.reward_call(req)
                .await
                .map(Response::new)
                .map_err(Status::from),
        )
    }

    type StreamRewardsStream = RewardStream;

    async fn stream_rewards(
        &self,
        req: Request<pb::StreamRewardsRequest>,
    ) -> Result<Response<RewardStream>, Status> {
        let mut call = Call::start(&self.state, STREAM_REWARDS);
        let timeout_ms = match timeout_ms(&req, &self.state.config().limits) {
            Ok(t) => t,
            Err(e) => return call.finish(Err(e.into())),
        };
        let body = RewardCall {
            message: convert::unary(req.into_inner()),
            timeout_ms,
        };
        match stream::start(&self.state, body, STREAM_REWARDS).await {
            Ok(parts) => Ok(Response::new(RewardStream::new(parts, call))),
            Err(e) => {
                let status = Status::from(e);
                call.end(status.code());
                Err(status)
            }
        }
    }

    async fn detect(
        &self,
        req: Request<pb::DetectRequest>,
    ) -> Result<Response<pb::DetectResponse>, Status> {
        let call = Call::start(&self.state, DETECT);
        call.finish(
            self.detect_call(req)
                .await
                .map(Response::new)
                .map_err(Status::from),
        )
    }

    async fn embed(
        &self,
        req: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        let call = Call::start(&self.state, EMBED);
        call.finish(
            self.embed_call(req)
                .await
                .map(Response::new)
                .map_err(Status::from),
        )
    }

    async fn info(
        &self,
        _: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let call = Call::start(&self.state, INFO);
        call.finish(self.info_call().map(Response::new).map_err(Status::from))
    }
}
