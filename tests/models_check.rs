//! `psr-reward models check` run as the real binary on the fixture and real-architecture
//! exports: passing models exit 0 with a report, a wrong adapter names the missing tensor,
//! and a non-batch-safe export (the fp16 Grounding DINO) fails the batch-safety check.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ort_library() -> PathBuf {
    std::env::var_os("PSR_ORT_LIBRARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".deps/libonnxruntime.so"))
}

/// Runs `psr-reward models check ARGS` from the repository root.
fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_psr-reward"))
        .args(["models", "check"])
        .args(args)
        .current_dir(root())
        .env("PSR_ORT_LIBRARY", ort_library())
        .env_remove("PSR_MODELS")
        .env_remove("PSR_CONFIG")
        .output()
        .expect("run psr-reward")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a passing run: exit 0, every model OK, one timing line and a batch-safety line each.
fn assert_passes(out: &Output, models: usize) {
    let text = stdout(out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}\n{stderr}");
    assert!(
        text.contains(&format!("{models} model(s) checked: all OK")),
        "{text}"
    );
    assert_eq!(text.matches("): OK").count(), models, "{text}");
    assert_eq!(text.matches("  forward    ").count(), models, "{text}");
    assert_eq!(
        text.matches("instance 0 cpu (requested cpu)").count(),
        models,
        "{text}"
    );
}

#[test]
fn the_fixture_manifest_passes() {
    let out = check(&["models/fixtures.toml"]);
    assert_passes(&out, 3);
    let text = stdout(&out);
    // Timed at every batch size up to the manifest's max_batch_size (detector: 8).
    let detector_timing = text
        .lines()
        .find(|l| l.starts_with("  forward    800x800: "))
        .expect("detector timing line");
    assert!(
        detector_timing.contains("b1 ") && detector_timing.contains("b8 "),
        "{text}"
    );
    assert!(!detector_timing.contains("b16 "), "{text}");
    assert_eq!(text.matches("batch-safe yes").count(), 3, "{text}");
}

#[test]
fn the_real_architecture_manifest_passes() {
    let out = check(&["tests/fixtures/real_arch/manifest.toml"]);
    assert_passes(&out, 3);
    let text = stdout(&out);
    assert!(text.contains("grounding-dino-tiny-random (detector, Grounding DINO HF export): OK"));
    assert!(text.contains("pixel_mask int64 [-1, 800, 800]"), "{text}");
}

#[test]
fn a_single_file_passes_against_its_adapter_and_reports_json() {
    let out = check(&[
        "tests/fixtures/real_arch/dino-vits16.onnx",
        "--as",
        "embedder",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let model = &report[0];
    assert_eq!(model["role"], "embedder");
    assert_eq!(model["problems"].as_array().map(Vec::len), Some(0));
    assert_eq!(model["signature"]["outputs"][0]["name"], "embeddings");
    assert_eq!(model["instances"][0]["actual"], "cpu");
    assert_eq!(model["batch_safety"]["safe"], true);
    let sizes: Vec<u64> = model["timings"]
        .as_array()
        .expect("timings")
        .iter()
        .filter_map(|t| t["batch_size"].as_u64())
        .collect();
    assert_eq!(sizes, vec![1, 2, 4, 8, 16]);
}

#[test]
fn the_wrong_adapter_exits_1_naming_the_missing_tensor() {
    let out = check(&[
        "tests/fixtures/real_arch/dino-vits16.onnx",
        "--as",
        "detector",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "input \"pixel_mask\": missing (Grounding DINO HF export needs pixel_values, \
             input_ids, token_type_ids, attention_mask, pixel_mask)"
        ),
        "{text}"
    );
    assert!(text.contains("output \"logits\": missing"), "{text}");
    assert!(
        !text.contains("  forward    "),
        "no forward pass after a mismatch: {text}"
    );
}

#[test]
fn a_single_file_needs_an_adapter() {
    let out = check(&["tests/fixtures/real_arch/dino-vits16.onnx"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs --as"), "{stderr}");
}

#[test]
fn the_fp16_detector_batched_by_4_is_not_batch_safe() {
    let dir = std::env::temp_dir().join(format!("psr-models-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let real = root().join("tests/fixtures/real_arch");
    let manifest = format!(
        r#"[detector]
name = "gd-fp16-batched"
path = "{}"
tokenizer = "{}"
preprocess = {{ resize = {{ rule = "squash", width = 800, height = 800 }}, filter = "bilinear", normalize = "imagenet" }}
batching = {{ max_batch_size = 4 }}
"#,
        real.join("grounding-dino-tiny-fp16.onnx").display(),
        real.join("tokenizer.json").display()
    );
    let path = dir.join("manifest.toml");
    std::fs::write(&path, manifest).expect("write manifest");
    let out = check(&[path.to_str().expect("utf-8 temp path")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("batch-safe NO"), "{text}");
    assert!(
        text.contains("the export is not batch-safe; serve it with max_batch_size = 1"),
        "{text}"
    );
    // The same export passes as its shipped manifest serves it (max_batch_size = 1).
    let shipped = check(&["tests/fixtures/real_arch/manifest-fp16.toml"]);
    assert_passes(&shipped, 3);
    let _ = std::fs::remove_dir_all(&dir);
}
