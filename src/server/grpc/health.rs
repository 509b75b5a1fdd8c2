//! `grpc.health.v1.Health`: SERVING exactly when `/ready` answers 200 (models warmed up, a
//! live instance on every lane, not draining), for the whole server (`""`) and for
//! `psr_reward.v1.RewardService`. The state is followed every [`FOLLOW_EVERY`], so `Watch`
//! callers see a change within that.

use std::time::Duration;

use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::server::routes::health::readiness;
use crate::server::state::AppState;

/// How often readiness is read into the health service.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// The names health is reported under.
const SERVICES: [&str; 2] = ["", "psr_reward.v1.RewardService"];

/// Keeps the health service in step with readiness until dropped.
pub struct Follower(tokio::task::JoinHandle<()>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts following `state`'s readiness into `reporter`.
pub fn follow(reporter: HealthReporter, state: AppState) -> Follower {
    Follower(tokio::spawn(async move {
        let mut last = None;
        loop {
            let status = match readiness(&state) {
                Ok(()) => ServingStatus::Serving,
                Err(_) => ServingStatus::NotServing,
            };
            if last != Some(status) {
                for name in SERVICES {
                    reporter.set_service_status(name, status).await;
                }
                last = Some(status);
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }))
}
