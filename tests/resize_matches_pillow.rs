//! Golden test: `imaging::resize` must reproduce Pillow's `Image.resize` byte for byte.
//!
//! The cases come from `tests/fixtures/make_resize_cases.py` (run by `make fixtures`),
//! read from `$PSR_FIXTURES_DIR/resize/cases.json`, defaulting to
//! `<CARGO_MANIFEST_DIR>/tests/fixtures/generated/resize/cases.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use psr_reward::imaging::resize::{Filter, Resizer, SourceBox, Window};
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    std::env::var_os("PSR_FIXTURES_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generated"),
        PathBuf::from,
    )
}

/// Decodes a PNG into (width, height, RGB8 bytes).
fn load_rgb(path: &Path) -> (u32, u32, Vec<u8>) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("cannot decode {}: {e}", path.display()))
        .to_rgb8();
    (img.width(), img.height(), img.into_raw())
}

fn size(case: &Value, key: &str) -> (u32, u32) {
    let v = &case[key];
    let dim = |i: usize| {
        v[i].as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or_else(|| panic!("bad {key} in {case}"))
    };
    (dim(0), dim(1))
}

fn source_box(case: &Value) -> Option<SourceBox> {
    let b = case["box"].as_array()?;
    let c = |i: usize| b[i].as_f64().unwrap_or_else(|| panic!("bad box in {case}"));
    Some(SourceBox {
        x0: c(0),
        y0: c(1),
        x1: c(2),
        y1: c(3),
    })
}

#[test]
fn resize_matches_pillow_byte_for_byte() {
    let root = fixtures_dir().join("resize");
    let manifest_path = root.join("cases.json");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap_or_else(|e| {
        panic!(
            "missing resize golden cases at {} ({e}); run `make fixtures` to generate them",
            manifest_path.display()
        )
    });
    let manifest: Value = serde_json::from_str(&manifest).expect("cases.json is not valid JSON");
    let cases = manifest["cases"]
        .as_array()
        .expect("cases.json has no `cases` array");
    assert!(
        !cases.is_empty(),
        "cases.json lists no cases; rerun `make fixtures`"
    );

    let mut inputs: HashMap<String, (u32, u32, Vec<u8>)> = HashMap::new();
    // The default resizer (SIMD kernels where the CPU has them) and the scalar one.
    let mut resizers = [Resizer::new(), Resizer::scalar()];
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        resizers[0].uses_simd(),
        std::arch::is_x86_feature_detected!("avx2"),
        "the golden cases must run through the SIMD kernels where they exist"
    );
    let mut failures = Vec::new();
    let mut windows_checked = 0;
    for case in cases {
        let name = case["name"].as_str().expect("case without name");
        let input = case["input"].as_str().expect("case without input");
        let (sw, sh, src) = inputs
            .entry(input.to_owned())
            .or_insert_with(|| load_rgb(&root.join(input)));
        assert_eq!(
            (*sw, *sh),
            size(case, "src_size"),
            "{name}: input size differs from manifest"
        );
        let (dw, dh) = size(case, "dst_size");
        let filter = match case["filter"].as_str() {
            Some("bilinear") => Filter::Bilinear,
            Some("bicubic") => Filter::Bicubic,
            other => panic!("{name}: unsupported filter {other:?}"),
        };
        let (ew, eh, expected) =
            load_rgb(&root.join(case["expected"].as_str().expect("no expected")));
        assert_eq!(
            (ew, eh),
            (dw, dh),
            "{name}: expected image has the wrong size"
        );

        for resizer in &mut resizers {
            let kernels = if resizer.uses_simd() {
                "simd"
            } else {
                "scalar"
            };
            let name = format!("{name} ({kernels})");
            let mut out = vec![0u8; expected.len()];
            resizer
                .resize_rgb8(src, *sw, *sh, source_box(case), &mut out, dw, dh, filter)
                .unwrap_or_else(|e| panic!("{name}: resize failed: {e}"));
            windows_checked += check_windows(
                resizer,
                (src, *sw, *sh),
                source_box(case),
                (dw, dh),
                filter,
                &expected,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Some(failure) = compare(&name, &out, &expected, dw) {
                failures.push(failure);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} case runs differ from Pillow:\n{}",
        failures.len(),
        cases.len() * resizers.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} resize cases and {windows_checked} output windows byte-identical to Pillow, \
         with the default and the scalar kernels",
        cases.len()
    );
}

/// A failure line when `out` differs from Pillow's `expected` (`dw` pixels a row).
fn compare(name: &str, out: &[u8], expected: &[u8], dw: u32) -> Option<String> {
    let diffs: Vec<u8> = out
        .iter()
        .zip(expected)
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let max_diff = diffs.iter().copied().max().unwrap_or(0);
    if max_diff == 0 {
        return None;
    }
    let bad_pixels = diffs
        .chunks_exact(3)
        .filter(|p| p.iter().any(|&d| d > 0))
        .count();
    let first = diffs.iter().position(|&d| d > 0).unwrap_or(0) / 3;
    Some(format!(
        "{name}: max abs diff {max_diff}, {bad_pixels}/{} pixels differ (first at x={}, y={})",
        diffs.len() / 3,
        first % dw as usize,
        first / dw as usize
    ))
}

/// Windows of the output to compute on their own: a centred 224² (or smaller) crop as the
/// embedders take, the top-left and bottom-right quarters, one row, one column, one pixel.
fn windows(dw: u32, dh: u32) -> Vec<Window> {
    let (cw, ch) = (dw.min(224), dh.min(224));
    let mut out = vec![
        Window {
            x: (dw - cw) / 2,
            y: (dh - ch) / 2,
            w: cw,
            h: ch,
        },
        Window {
            x: 0,
            y: 0,
            w: dw.div_ceil(2),
            h: dh.div_ceil(2),
        },
        Window {
            x: dw / 2,
            y: dh / 2,
            w: dw - dw / 2,
            h: dh - dh / 2,
        },
        Window {
            x: 0,
            y: dh / 3,
            w: dw,
            h: 1,
        },
        Window {
            x: dw / 3,
            y: 0,
            w: 1,
            h: dh,
        },
        Window {
            x: dw - 1,
            y: dh - 1,
            w: 1,
            h: 1,
        },
    ];
    out.retain(|w| w.w > 0 && w.h > 0);
    out
}

/// Resizes only each window of [`windows`] and compares it with that part of Pillow's full
/// output; returns how many windows matched.
fn check_windows(
    resizer: &mut Resizer,
    (src, sw, sh): (&[u8], u32, u32),
    area: Option<SourceBox>,
    (dw, dh): (u32, u32),
    filter: Filter,
    expected: &[u8],
) -> Result<usize, String> {
    let all = windows(dw, dh);
    for win in &all {
        let mut out = vec![0u8; (win.w * win.h * 3) as usize];
        resizer
            .resize_window(src, (sw, sh), area, (dw, dh), *win, &mut out, filter)
            .map_err(|e| format!("window {win:?}: {e}"))?;
        for row in 0..win.h as usize {
            let at = ((win.y as usize + row) * dw as usize + win.x as usize) * 3;
            let want = &expected[at..at + win.w as usize * 3];
            let got = &out[row * win.w as usize * 3..][..win.w as usize * 3];
            if want != got {
                return Err(format!("window {win:?} differs from Pillow at row {row}"));
            }
        }
    }
    Ok(all.len())
}
