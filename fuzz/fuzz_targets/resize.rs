//! The Pillow-exact resampler on random sizes, boxes and output windows, against a naive
//! reference: a window of the output is byte-identical to that window of the full resize
//! (the centre-crop-only resampling relies on it), and `Preprocess::run` equals a full resize
//! followed by the crop or padding and the normalisation of its plan.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use psr_reward::imaging::resize::{Filter, Resizer, SourceBox, Window};
use psr_reward::imaging::{Preprocess, ResizeRule, TensorPool, IMAGENET};

#[derive(Arbitrary, Debug)]
struct Input {
    src: (u8, u8),
    dst: (u16, u16),
    window: (u16, u16, u16, u16),
    /// Pillow's box: none, raw `f32`s (mostly refused), or fractions of the source.
    area: (u8, [f32; 4], [u16; 4]),
    bicubic: bool,
    rule: (u8, u16, u16),
    thin: Option<u16>,
    pixels: Vec<u8>,
}

fn fill(pixels: &[u8], len: usize) -> Vec<u8> {
    if pixels.is_empty() {
        return vec![7; len];
    }
    pixels.iter().copied().cycle().take(len).collect()
}

/// Window of the resize vs. the window cut out of the full resize.
fn check_window(inp: &Input, filter: Filter) {
    let (sw, sh) = (u32::from(inp.src.0) + 1, u32::from(inp.src.1) + 1);
    let (dw, dh) = (
        u32::from(inp.dst.0 % 300) + 1,
        u32::from(inp.dst.1 % 300) + 1,
    );
    let (wx, wy) = (u32::from(inp.window.0) % dw, u32::from(inp.window.1) % dh);
    let (ww, wh) = (
        u32::from(inp.window.2) % (dw - wx) + 1,
        u32::from(inp.window.3) % (dh - wy) + 1,
    );
    let window = Window {
        x: wx,
        y: wy,
        w: ww,
        h: wh,
    };
    let (mode, raw, frac) = inp.area;
    let at = |f: u16, side: u32| f64::from(f) / 65535.0 * f64::from(side);
    let area = match mode % 4 {
        0 => None,
        1 => Some(raw.map(f64::from)),
        _ => Some([
            at(frac[0], sw),
            at(frac[1], sh),
            at(frac[2], sw),
            at(frac[3], sh),
        ]),
    }
    .map(|[x0, y0, x1, y1]| SourceBox { x0, y0, x1, y1 });
    let src = fill(&inp.pixels, (sw * sh * 3) as usize);
    let mut resizer = Resizer::new();
    let mut full = vec![0u8; (dw * dh * 3) as usize];
    let full_result = resizer.resize_rgb8(&src, sw, sh, area, &mut full, dw, dh, filter);
    let mut part = vec![0u8; (ww * wh * 3) as usize];
    let part_result =
        resizer.resize_window(&src, (sw, sh), area, (dw, dh), window, &mut part, filter);
    // Compared as text: a refused NaN box is not equal to itself.
    assert_eq!(
        format!("{full_result:?}"),
        format!("{part_result:?}"),
        "{sw}x{sh} -> {dw}x{dh} {window:?} {area:?}"
    );
    if full_result.is_err() {
        return;
    }
    for y in 0..wh as usize {
        let row = &part[y * ww as usize * 3..][..ww as usize * 3];
        let at = ((wy as usize + y) * dw as usize + wx as usize) * 3;
        assert_eq!(
            row,
            &full[at..at + ww as usize * 3],
            "row {y} of {window:?}: {sw}x{sh} -> {dw}x{dh} {area:?} {filter:?}"
        );
    }
}

/// `Preprocess::run` vs. full resize + crop/pad + normalisation from its plan.
fn check_preprocess(inp: &Input, filter: Filter) {
    let (a, b) = (
        u32::from(inp.rule.1 % 64) + 1,
        u32::from(inp.rule.2 % 64) + 1,
    );
    let rule = match inp.rule.0 % 4 {
        0 => ResizeRule::ShortSideCenterCrop { resize: a, crop: b },
        1 => ResizeRule::ShortSideMaxLong {
            short: a,
            max_long: a.max(b),
        },
        2 => ResizeRule::Squash {
            width: a,
            height: b,
        },
        _ => ResizeRule::Letterbox { size: a, fill: 114 },
    };
    // Ordinary sources, or a long strip (up to 1 x 8192) as an upload may be.
    let (mut sw, mut sh) = (u32::from(inp.src.0) + 1, u32::from(inp.src.1) + 1);
    if let Some(t) = inp.thin {
        let long = u32::from(t % 8192) + 1;
        (sw, sh) = if t % 2 == 0 {
            (sw % 4 + 1, long)
        } else {
            (long, sh % 4 + 1)
        };
    }
    let pre = Preprocess::new(rule, filter, IMAGENET);
    let src = fill(&inp.pixels, (sw * sh * 3) as usize);
    let img = image::RgbImage::from_raw(sw, sh, src.clone()).expect("buffer");
    let pool = TensorPool::new();
    let mut scratch = Vec::new();
    let tensor = pre
        .run(&img, &mut Resizer::new(), &mut scratch, &pool)
        .unwrap_or_else(|e| panic!("{sw}x{sh} {rule:?}: {e}"));
    let plan = pre.plan(sw, sh);
    let [c, oh, ow] = tensor.shape();
    assert_eq!(
        (c, oh, ow),
        (3, plan.out_h as usize, plan.out_w as usize),
        "{rule:?}"
    );
    assert!(tensor.data().iter().all(|v| v.is_finite()));
    // The reference resizes the whole image: only when that is small.
    let (rw, rh) = (plan.resized_w, plan.resized_h);
    if u64::from(rw) * u64::from(rh) > 1 << 20 {
        return;
    }
    let mut resized = vec![0u8; (rw * rh * 3) as usize];
    Resizer::new()
        .resize_rgb8(&src, sw, sh, None, &mut resized, rw, rh, filter)
        .expect("full resize");
    let norm = |ch: usize, v: u8| (f32::from(v) / 255.0 - IMAGENET.mean[ch]) / IMAGENET.std[ch];
    for y in 0..oh {
        for x in 0..ow {
            // Output pixel (x, y) shows resized pixel (x + crop - pad, y + crop - pad).
            let sx = x as i64 + i64::from(plan.crop_x) - i64::from(plan.pad_x);
            let sy = y as i64 + i64::from(plan.crop_y) - i64::from(plan.pad_y);
            let inside = (0..i64::from(rw)).contains(&sx) && (0..i64::from(rh)).contains(&sy);
            for ch in 0..3 {
                let v = if inside {
                    resized[((sy as usize * rw as usize) + sx as usize) * 3 + ch]
                } else {
                    plan.fill
                };
                let got = tensor.data()[(ch * oh + y) * ow + x];
                assert_eq!(
                    got.to_bits(),
                    norm(ch, v).to_bits(),
                    "{sw}x{sh} {rule:?} {plan:?} at ({x},{y}) ch {ch}"
                );
            }
        }
    }
}

fuzz_target!(|inp: Input| {
    let filter = if inp.bicubic {
        Filter::Bicubic
    } else {
        Filter::Bilinear
    };
    check_window(&inp, filter);
    check_preprocess(&inp, filter);
});
