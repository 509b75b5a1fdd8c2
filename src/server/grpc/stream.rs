//! `StreamRewards`: every item of the request scored on its own (its models' work still
//! batches with every other caller's), each result sent as soon as it is ready, tagged with
//! its index. The stream owns the items' work: when the client cancels (or the connection
//! goes), dropping the stream drops their tickets, and the lanes discard the work still
//! queued (`psr_reward_batcher_failures_total{reason="dropped"}`) instead of running it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use tonic::{Code, Status};

use super::convert;
use super::edge::Call;
use super::pb;
use super::service::RewardCall;
use crate::reward::engine::{self, ItemReward, RewardError};
use crate::server::admission::{BytesPermit, RequestPermit};
use crate::server::error::ApiError;
use crate::server::reward_input;
use crate::server::state::AppState;

/// One item's outcome, with its index in the request.
type Scored = (usize, Result<ItemReward, RewardError>);
type ItemFuture = Pin<Box<dyn Future<Output = Scored> + Send>>;

/// A started stream: the items' work and what the request holds while it runs.
pub struct Started {
    items: FuturesUnordered<ItemFuture>,
    options: pb::SubjectConsistencyOptions,
    arrived: Instant,
    _slot: RequestPermit,
    _budget: BytesPermit,
}

/// Admits, decodes and starts scoring every item of `body` (each on its own, all at once).
pub async fn start(state: &AppState, body: RewardCall, route: &str) -> Result<Started, ApiError> {
    let arrived = Instant::now();
    let slot = state.admission().request()?;
    let services = Arc::new(reward_input::services(state)?);
    let (decoded, _) = reward_input::decode_on_pool(state, arrived, route, body).await?;
    let plan = Arc::new(decoded.plan);
    let items = FuturesUnordered::new();
    for (i, item) in decoded.items.into_iter().enumerate() {
        let (services, plan) = (services.clone(), plan.clone());
        items.push(Box::pin(async move {
            let scored = engine::compute(&services, vec![item], &plan).await;
            let one = scored.and_then(|(mut results, _)| {
                results
                    .pop()
                    .ok_or_else(|| RewardError::Preprocess("no result for the item".into()))
            });
            (i, one)
        }) as ItemFuture);
    }
    Ok(Started {
        items,
        options: convert::options(&plan.options),
        arrived,
        _slot: slot,
        _budget: decoded.permit,
    })
}

/// The response stream: results in completion order, then the end of the call (its status
/// the first in-process failure, after the results already sent).
pub struct RewardStream {
    started: Started,
    call: Call,
    done: bool,
}

impl RewardStream {
    /// Streams `started`'s results, recording the call in `call` when it ends.
    pub fn new(started: Started, call: Call) -> Self {
        Self {
            started,
            call,
            done: false,
        }
    }
}

impl Stream for RewardStream {
    type Item = Result<pb::StreamRewardsResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let next = match self.started.items.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(next) => next,
        };
        let this = &mut *self;
        Poll::Ready(match next {
            None => {
                this.done = true;
                this.call.end(Code::Ok);
                None
            }
            Some((index, Ok(result))) => Some(Ok(pb::StreamRewardsResponse {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                result: Some(convert::item_reward(result)),
                options: Some(this.started.options),
                elapsed_ms: this.started.arrived.elapsed().as_secs_f64() * 1e3,
            })),
            Some((_, Err(e))) => {
                // The other items' work goes with the stream: the call has failed.
                this.done = true;
                this.started.items.clear();
                let status = Status::from(ApiError::from(e));
                this.call.end(status.code());
                Some(Err(status))
            }
        })
    }
}
