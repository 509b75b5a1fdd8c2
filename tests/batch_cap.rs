//! The batch cap learned at start-up: `/info` reports the measured curve and a cap that obeys
//! the rule on it, and the cap is in force in `psr_reward_batch_cap`.

mod common;

use common::*;
use psr_reward::batcher::{choose_cap, CurvePoint};
use psr_reward::config::Config;

/// The fixture models with every lane learning its cap.
fn learning_manifest() -> psr_reward::models::manifest::Manifest {
    let mut m = default_manifest();
    if let Some(d) = m.detector.as_mut() {
        d.batching.learn_cap = true;
    }
    for spec in [m.embedder.as_mut(), m.aesthetic.as_mut()]
        .into_iter()
        .flatten()
    {
        spec.batching.learn_cap = true;
    }
    m
}

/// The reported curve of one `/info` model entry.
fn reported_curve(model: &serde_json::Value) -> Vec<CurvePoint> {
    model["batch_curve"]
        .as_array()
        .expect("batch_curve is a list")
        .iter()
        .map(|p| CurvePoint {
            batch_size: p["batch_size"].as_u64().expect("batch_size") as usize,
            items_per_s: p["items_per_s"].as_f64().expect("items_per_s"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_reports_a_learned_curve_and_a_cap_that_obeys_the_rule() {
    let s = TestServer::start_with(learning_manifest(), Config::default()).await;
    let info = s.get_json("/info").await;
    let models = info["models"].as_array().expect("models");
    assert_eq!(models.len(), 3);
    for model in models {
        let name = model["name"].as_str().expect("name");
        let curve = reported_curve(model);
        assert!(!curve.is_empty(), "{name}: no curve");
        assert_eq!(curve[0].batch_size, 1, "{name}: the curve starts at 1");
        assert!(
            curve.windows(2).all(|w| w[0].batch_size < w[1].batch_size),
            "{name}: sizes not increasing: {curve:?}"
        );
        assert!(
            curve.iter().all(|p| p.items_per_s > 0.0),
            "{name}: {curve:?}"
        );
        let max = model["max_batch_size"].as_u64().expect("max") as usize;
        assert!(
            curve.iter().all(|p| p.batch_size <= max),
            "{name}: {curve:?}"
        );
        let cap = model["batch_cap"].as_u64().expect("batch_cap") as usize;
        assert_eq!(Some(cap), choose_cap(&curve), "{name}: {curve:?}");
        let gauge = s
            .metric(&format!("psr_reward_batch_cap{{model=\"{name}\"}}"))
            .await;
        assert_eq!(gauge, cap as f64, "{name}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_learn_cap_the_configured_size_is_in_force() {
    let s = TestServer::start().await;
    let info = s.get_json("/info").await;
    for model in info["models"].as_array().expect("models") {
        assert_eq!(model["batch_cap"], model["max_batch_size"]);
        assert_eq!(model["batch_cap"], model["batching"]["max_batch_size"]);
        assert_eq!(model["batch_curve"], serde_json::json!([]));
        assert_eq!(model["batching"]["learn_cap"], false);
    }
    s.stop().await;
}
