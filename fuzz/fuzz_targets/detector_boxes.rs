//! Detector output -> boxes -> crops -> embedder input, on arbitrary model outputs (NaN,
//! infinities, huge or inverted boxes): the windows stay inside the image, crops have the
//! window's size, and every crop preprocesses into a finite 224x224 tensor. YOLO decoding
//! (threshold + class-wise NMS) on arbitrary predictions keeps sorted, unique survivors.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use psr_reward::imaging::resize::{Filter, Resizer};
use psr_reward::imaging::{Preprocess, ResizeRule, TensorPool, IMAGENET};
use psr_reward::models::DetectorOutput;
use psr_reward::reward::crop::{self, CropRule};

#[derive(Arbitrary, Debug)]
struct Input {
    size: (u16, u16),
    text_len: u8,
    threshold: f32,
    span: (u8, u8),
    queries: Vec<([f32; 4], f32)>,
    token_scores: Vec<f32>,
    yolo: (u8, u8, f32, f32),
}

fn check_crops(inp: &Input, out: &DetectorOutput, w: u32, h: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 9]));
    let pre = Preprocess::new(
        ResizeRule::ShortSideCenterCrop {
            resize: 256,
            crop: 224,
        },
        Filter::Bicubic,
        IMAGENET,
    );
    let pool = TensorPool::new();
    let (mut resizer, mut scratch) = (Resizer::new(), Vec::new());
    let span = usize::from(inp.span.0)..usize::from(inp.span.1);
    let mut dets = out.detections(inp.threshold, w, h);
    dets.extend(out.span_detections(span, inp.threshold, w, h));
    for (n, d) in dets.iter().enumerate() {
        assert!(d.query < out.boxes.len());
        assert!(d.score > inp.threshold, "{d:?}");
        let b = crop::truncate_box(d.bbox);
        for rule in [CropRule::PythonSlice, CropRule::Clamp] {
            let Some(win) = crop::window(b, w, h, rule) else {
                continue;
            };
            let (x0, y0, x1, y1) = win;
            assert!(
                x0 < x1 && x1 <= w && y0 < y1 && y1 <= h,
                "{b:?} -> {win:?} in {w}x{h}"
            );
            let c = crop::crop(&img, win);
            assert_eq!(c.dimensions(), (x1 - x0, y1 - y0));
            assert_eq!(c.get_pixel(0, 0), img.get_pixel(x0, y0));
            // The embedder input of the first few crops (the reward embeds every one).
            if n < 4 {
                let t = pre
                    .run(&c, &mut resizer, &mut scratch, &pool)
                    .unwrap_or_else(|e| panic!("crop {win:?} of {w}x{h}: {e}"));
                assert_eq!(t.shape(), [3, 224, 224]);
                assert!(t.data().iter().all(|v| v.is_finite()));
            }
        }
    }
}

fn check_yolo(inp: &Input) {
    let (classes, n) = (
        usize::from(inp.yolo.0 % 5) + 1,
        usize::from(inp.yolo.1 % 32),
    );
    let rows = 4 + classes;
    let pred: Vec<f32> = if inp.token_scores.is_empty() {
        vec![0.5; rows * n]
    } else {
        inp.token_scores
            .iter()
            .copied()
            .cycle()
            .take(rows * n)
            .collect()
    };
    // Thresholds come from a validated manifest: finite.
    let finite = |v: f32, d: f32| if v.is_finite() { v } else { d };
    let (conf, iou) = (finite(inp.yolo.2, 0.25), finite(inp.yolo.3, 0.45));
    let kept = psr_reward::models::yolo_decode(&pred, classes, n, conf, iou);
    assert!(kept.len() <= n);
    for pair in kept.windows(2) {
        assert!(pair[0].2.total_cmp(&pair[1].2).is_ge(), "{kept:?}");
    }
    for k in &kept {
        assert!(k.1 < classes && k.2 > conf, "{k:?}");
    }
}

fuzz_target!(|inp: Input| {
    let (w, h) = (
        u32::from(inp.size.0 % 2048) + 1,
        u32::from(inp.size.1 % 2048) + 1,
    );
    let text_len = usize::from(inp.text_len % 32);
    let queries = &inp.queries[..inp.queries.len().min(64)];
    let mut token_scores: Vec<f32> = inp
        .token_scores
        .iter()
        .copied()
        .cycle()
        .take(queries.len() * text_len)
        .collect();
    token_scores.resize(queries.len() * text_len, 0.0);
    let out = DetectorOutput {
        boxes: queries.iter().map(|q| q.0).collect(),
        scores: queries.iter().map(|q| q.1).collect(),
        token_scores,
        text_len,
    };
    check_crops(&inp, &out, w, h);
    check_yolo(&inp);
});
