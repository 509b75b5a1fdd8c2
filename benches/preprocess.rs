//! CPU cost per image of the service's path from request text to tensor, step by step, on one
//! core: base64 decode, JPEG decode (`imaging::decode_bytes`, what the service runs), the
//! Pillow-exact resize of the embedders' preprocessing (short side 256, centre 224 window,
//! bicubic) with the SIMD and the scalar kernels, and normalisation into the tensor.
//!
//! `cargo bench --bench preprocess -- [--images N] [--rounds R]`: N distinct 512x512 JPEGs
//! (quality 90, the serving bench's images), each step timed over all of them R times; the
//! table gives the median round.

mod common;

use std::hint::black_box;
use std::time::Instant;

use psr_reward::imaging::resize::{Filter, Resizer};
use psr_reward::imaging::{
    decode_base64_into, decode_bytes, DecodeLimits, Preprocess, ResizeRule, TensorPool, IMAGENET,
};

/// Limits far above the bench's images, so they never refuse one.
const LIMITS: DecodeLimits = DecodeLimits {
    max_bytes: 64 << 20,
    max_side: 8192,
    max_pixels: 8192 * 8192,
    max_aspect_ratio: 64.0,
};

struct Args {
    images: usize,
    rounds: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        images: 64,
        rounds: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut v = || it.next().expect("flag value");
        match flag.as_str() {
            "--images" => a.images = v().parse().expect("images"),
            "--rounds" => a.rounds = v().parse().expect("rounds"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Median over `rounds` of the mean seconds per item of `step` run on every item.
fn per_item<T>(items: &[T], rounds: usize, mut step: impl FnMut(&T)) -> f64 {
    items.iter().for_each(&mut step);
    let mut means: Vec<f64> = (0..rounds.max(1))
        .map(|_| {
            let start = Instant::now();
            items.iter().for_each(&mut step);
            start.elapsed().as_secs_f64() / items.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    means[means.len() / 2]
}

/// Seconds per image of the kept-window resize alone, with `resizer`'s kernels.
fn resize_step(
    images: &[image::RgbImage],
    rounds: usize,
    preprocess: &Preprocess,
    mut resizer: Resizer,
) -> f64 {
    let mut out = Vec::new();
    per_item(images, rounds, |img| {
        let plan = preprocess.plan(img.width(), img.height());
        let window = plan.kept_window();
        out.clear();
        out.resize(window.w as usize * window.h as usize * 3, 0);
        resizer
            .resize_window(
                img.as_raw(),
                img.dimensions(),
                None,
                (plan.resized_w, plan.resized_h),
                window,
                &mut out,
                preprocess.filter(),
            )
            .expect("resize");
        black_box(&out);
    })
}

/// Seconds per image of `Preprocess::run` (resize and normalise) with `resizer`'s kernels.
fn run_step(
    images: &[image::RgbImage],
    rounds: usize,
    preprocess: &Preprocess,
    mut resizer: Resizer,
) -> f64 {
    let (mut scratch, pool) = (Vec::new(), TensorPool::new());
    per_item(images, rounds, |img| {
        let tensor = preprocess.run(img, &mut resizer, &mut scratch, &pool);
        black_box(tensor.expect("preprocess"));
    })
}

fn row(step: &str, seconds: f64) {
    println!("| {step} | {:.3} | {:.0} |", seconds * 1e3, 1.0 / seconds);
}

fn main() {
    if !common::invoked_by_cargo_bench("preprocess") {
        return;
    }
    let args = parse_args();
    let jpegs = common::photo_jpegs(args.images);
    let texts: Vec<String> = jpegs.iter().map(|j| common::b64(j)).collect();
    let preprocess = Preprocess::new(
        ResizeRule::ShortSideCenterCrop {
            resize: 256,
            crop: 224,
        },
        Filter::Bicubic,
        IMAGENET,
    );
    let images: Vec<image::RgbImage> = jpegs
        .iter()
        .map(|j| decode_bytes(j, &LIMITS).expect("decode").rgb)
        .collect();

    let mut bytes = Vec::new();
    let base64 = per_item(&texts, args.rounds, |t| {
        decode_base64_into(t, LIMITS.max_bytes, &mut bytes).expect("base64");
        black_box(&bytes);
    });
    let decode = per_item(&jpegs, args.rounds, |j| {
        black_box(decode_bytes(j, &LIMITS).expect("decode"));
    });
    let simd = Resizer::new().uses_simd();
    let resize_simd = resize_step(&images, args.rounds, &preprocess, Resizer::new());
    let resize_scalar = resize_step(&images, args.rounds, &preprocess, Resizer::scalar());
    let run_simd = run_step(&images, args.rounds, &preprocess, Resizer::new());
    let run_scalar = run_step(&images, args.rounds, &preprocess, Resizer::scalar());

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{} distinct 512x512 JPEG q90 images, median of {} rounds, one thread; \
         SIMD kernels available: {simd}; load average (1, 5, 15 min) at the end: {}",
        args.images,
        args.rounds,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!("| step | ms per image | images/s per core |");
    println!("|---|---:|---:|");
    row("base64 decode", base64);
    row("JPEG decode (`decode_bytes`, zune-jpeg)", decode);
    row("resize 512² -> 256², centre 224² window, SIMD", resize_simd);
    row("resize, scalar kernels", resize_scalar);
    row(
        "normalise to the tensor (`run` minus resize)",
        run_simd - resize_simd,
    );
    row("`Preprocess::run` (resize + normalise), SIMD", run_simd);
    row("`Preprocess::run`, scalar kernels", run_scalar);
    row(
        "total: base64 + decode + run, SIMD",
        base64 + decode + run_simd,
    );
    row("total, scalar kernels", base64 + decode + run_scalar);
}
