//! `psr-reward eval` on a generated mini-PSRBench, in process on the fixture models with the
//! loopback test judge: table values equal hand-computed expectations, a missing image is
//! listed and excluded, an answer the scripts drop is counted, a rerun reuses the journal,
//! and the charts decode at their documented size.

mod common;

use std::path::Path;

use common::judge::{spawn_judge, Shared};
use common::*;
use psr_reward::config::Config;
use psr_reward::eval::backend::Backend;
use psr_reward::eval::dataset::Subset;
use psr_reward::eval::report::charts::{DISTRIBUTIONS_SIZE, RADAR_SIZE};
use psr_reward::eval::runner::{RunSettings, Stop};
use psr_reward::eval::{evaluate, EvalConfig};
use psr_reward::reward::{JudgeConfig, Mode, RemotePolicy};
use serde_json::json;

/// 800x800 (the detector's short side: no resize, exact boxes) black scenes.
fn write_bench(root: &Path) {
    std::fs::create_dir_all(root.join("subjects")).unwrap();
    std::fs::create_dir_all(root.join("out")).unwrap();
    let save = |img: image::RgbImage, p: &str| img.save(root.join(p)).unwrap();
    save(
        scene(800, 800, &[(100, 100, 300, 300, [255, 0, 0])]),
        "subjects/red.png",
    );
    save(
        scene(800, 800, &[(100, 100, 300, 300, [0, 0, 255])]),
        "subjects/blue.png",
    );
    // Red top-left, blue top-right: both detected (similarity 1), red left of blue.
    save(
        scene(
            800,
            800,
            &[
                (100, 100, 300, 300, [255, 0, 0]),
                (500, 100, 700, 300, [0, 0, 255]),
            ],
        ),
        "out/ok.png",
    );
    // Solid yellow: nothing detected; whole image vs red 2/3, vs blue 0.
    save(
        scene(800, 800, &[(0, 0, 800, 800, [255, 255, 0])]),
        "out/yellow.png",
    );
    let out = root.join("out");
    let entry = |instruction: &str, image: &str| {
        json!({"instruction": instruction, "input_path": ["subjects/red.png", "subjects/blue.png"],
               "category1": "red", "category2": "blue",
               "result_path": out.join(image).display().to_string()})
    };
    for subset in ["Action", "Position"] {
        let entries = json!([
            entry("a red square to the left of a blue square", "ok.png"),
            entry(
                "a red square above a blue square SHAPE=trailing_dot",
                "yellow.png"
            ),
            entry("a red square and a blue square", "missing.png"),
        ]);
        std::fs::write(out.join(format!("{subset}.json")), entries.to_string()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mini_benchmark_gives_the_hand_computed_table_and_resumes() {
    let log = Shared::default();
    let judge = spawn_judge(log.clone()).await;
    let config = Config {
        judge: Some(JudgeConfig {
            base_url: format!("{judge}/v1"),
            model: "test-judge".into(),
            api_key_env: None,
            api_key_file: None,
            temperature: 0.2,
            max_tokens: None,
            cache_entries: 0,
            policy: RemotePolicy {
                retries: 0,
                ..RemotePolicy::default()
            },
            templates: Default::default(),
        }),
        ..Config::default()
    };
    let server = TestServer::start_with(default_manifest(), config.clone()).await;
    let root = std::env::temp_dir().join(format!("psr-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    write_bench(&root);
    let eval = EvalConfig {
        data_root: root.clone(),
        results: vec![("fixture".into(), root.join("out"))],
        subsets: vec![Subset::Action, Subset::Position],
        out: root.join("report"),
        fresh: false,
        allow_outside_root: false,
        settings: RunSettings {
            concurrency: 4,
            mode: Mode::Psr,
            progress: false,
            stop: Stop::default(),
        },
    };
    let backend = Backend::in_process(server.state.clone());
    let first = evaluate(&backend, &eval).await.unwrap();
    assert_eq!(
        (first.scored_now, first.reused),
        (4, 0),
        "{:?}",
        first.summary.problems
    );
    let set = &first.summary.sets[0];
    let close = |a: Option<f64>, b: f64| assert!((a.unwrap() - b).abs() < 1e-4, "{a:?} vs {b}");
    for s in &set.subsets {
        assert_eq!(
            (s.samples, s.scored, s.missing_image),
            (3, 2, 1),
            "{}",
            s.subset
        );
        // ok: (1 + 1) / 2; yellow: (2/3 + 0) / 2.
        close(s.subject_consistency.mean, (1.0 + 1.0 / 3.0) / 2.0);
    }
    let action = &set.subsets[0];
    // The judge's 8 -> 0.8; the trailing-dot answer is dropped and counted.
    close(action.alignment.mean, 0.8);
    assert_eq!(action.alignment_dropped, 1);
    let position = &set.subsets[1];
    // Left of: 1; "above" with nothing detected: 0.
    close(position.alignment.mean, 0.5);
    assert_eq!(first.summary.problems.len(), 2);
    assert!(first.summary.problems[0].detail.contains("missing.png"));

    let second = evaluate(&backend, &eval).await.unwrap();
    assert_eq!((second.scored_now, second.reused), (0, 4));
    assert_eq!(second.summary, first.summary);
    for (path, size) in [
        (&first.files.radar_png, RADAR_SIZE),
        (&first.files.distributions_png, DISTRIBUTIONS_SIZE),
    ] {
        let img = image::open(path).unwrap();
        assert_eq!((img.width(), img.height()), size);
    }
    let html = std::fs::read_to_string(&first.files.html).unwrap();
    assert_eq!(html.matches("class=sample ").count(), 6);
    server.stop().await;

    // Another aesthetic normalisation changes the scores: the journal is refused.
    let mut rescaled = config;
    rescaled.rewards.normalization.insert(
        "aesthetic".into(),
        psr_reward::reward::Normalization {
            scale: 0.2,
            offset: 0.0,
        },
    );
    let other = TestServer::start_with(default_manifest(), rescaled).await;
    let refused = evaluate(&Backend::in_process(other.state.clone()), &eval).await;
    match refused {
        Err(psr_reward::eval::EvalError::Journal(why)) => {
            assert!(why.contains("normalization"), "{why}")
        }
        other => panic!("resumed across a changed normalisation: {:?}", other.err()),
    }
    other.stop().await;
    std::fs::remove_dir_all(&root).unwrap();
}
