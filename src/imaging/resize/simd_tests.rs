//! The SIMD 8-bit passes against the scalar ones: byte-identical on random images, sizes,
//! boxes, windows, filters and 3 or 4 bands, and on the service's own 512² -> 224² crop.

use super::*;

/// SplitMix64: a small seeded generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }

    fn below(&mut self, n: f64) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * n
    }
}

/// Noise with runs of 0 and 255, so bicubic overshoot hits both clip bounds.
fn image(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| match rng.next() % 8 {
            0 => 0,
            1 => 255,
            _ => rng.next() as u8,
        })
        .collect()
}

/// One resize, `channels` bands, on both kernels; panics with the case when they differ.
fn compare(channels: usize, src: &[u8], geometry: Geometry, filter: Filter) {
    let w = geometry.window;
    let len = (w.w * w.h) as usize * channels;
    let run = |resizer: &mut Resizer| {
        let mut out = vec![0u8; len];
        let result = match channels {
            3 => resizer.resize_window(
                src,
                geometry.src,
                geometry.area,
                geometry.dst,
                w,
                &mut out,
                filter,
            ),
            _ => resizer.resize_window_quad(src, geometry, &mut out, filter),
        };
        assert_eq!(result, Ok(()), "{geometry:?}");
        out
    };
    let (scalar, simd) = (run(&mut Resizer::scalar()), run(&mut Resizer::new()));
    if let Some(i) = scalar.iter().zip(&simd).position(|(a, b)| a != b) {
        panic!(
            "SIMD differs from scalar at sample {i} ({} vs {}): {channels} bands, {filter:?}, {geometry:?}",
            simd[i], scalar[i]
        );
    }
}

/// A random box inside `w`×`h` with positive sides, or none.
fn random_box(rng: &mut Rng, w: u32, h: u32) -> Option<SourceBox> {
    if rng.next().is_multiple_of(2) {
        return None;
    }
    let (w, h) = (f64::from(w), f64::from(h));
    let (x0, y0) = (rng.below(w * 0.5), rng.below(h * 0.5));
    let (x1, y1) = (
        x0 + 0.25 + rng.below(w - x0 - 0.25),
        y0 + 0.25 + rng.below(h - y0 - 0.25),
    );
    Some(SourceBox { x0, y0, x1, y1 })
}

/// A random window of a `w`×`h` output, or all of it.
fn random_window(rng: &mut Rng, w: u32, h: u32) -> Window {
    if rng.next().is_multiple_of(2) {
        return Window::full(w, h);
    }
    let (x, y) = (rng.range(0, w - 1), rng.range(0, h - 1));
    let (ww, wh) = (rng.range(1, w - x), rng.range(1, h - y));
    Window { x, y, w: ww, h: wh }
}

#[test]
fn the_simd_kernels_run_where_the_cpu_has_them() {
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        Resizer::new().uses_simd(),
        std::arch::is_x86_feature_detected!("avx2")
    );
    assert!(!Resizer::scalar().uses_simd());
}

#[test]
fn simd_matches_scalar_on_random_resizes() {
    let mut rng = Rng(0x5EED_1234);
    for case in 0..600 {
        let channels = if case % 2 == 0 { 3 } else { 4 };
        let filter = if case % 4 < 2 {
            Filter::Bicubic
        } else {
            Filter::Bilinear
        };
        // Mostly small sizes; some long sides, so wide downscales get many taps.
        let side = |rng: &mut Rng| match rng.next() % 6 {
            0 => rng.range(1, 4),
            1 => rng.range(200, 700),
            _ => rng.range(5, 120),
        };
        let (sw, sh) = (side(&mut rng), side(&mut rng));
        let (dw, dh) = (side(&mut rng), side(&mut rng));
        let src = image(&mut rng, (sw * sh) as usize * channels);
        let geometry = Geometry {
            src: (sw, sh),
            area: random_box(&mut rng, sw, sh),
            dst: (dw, dh),
            window: random_window(&mut rng, dw, dh),
        };
        compare(channels, &src, geometry, filter);
    }
}

#[test]
fn simd_matches_scalar_on_each_pass_order() {
    let mut rng = Rng(7);
    // Horizontal only, vertical only, both (horizontal first), vertical first, upscale.
    let sizes = [
        ((97, 41), (33, 41)),
        ((41, 97), (41, 33)),
        ((300, 200), (101, 67)),
        ((60, 400), (50, 90)),
        ((13, 9), (200, 170)),
    ];
    for ((sw, sh), (dw, dh)) in sizes {
        for channels in [3, 4] {
            for filter in [Filter::Bilinear, Filter::Bicubic] {
                let src = image(&mut rng, (sw * sh) as usize * channels);
                let geometry = Geometry {
                    src: (sw, sh),
                    area: None,
                    dst: (dw, dh),
                    window: Window::full(dw, dh),
                };
                compare(channels, &src, geometry, filter);
            }
        }
    }
}

#[test]
fn simd_matches_scalar_on_the_embedder_crop() {
    // The service's hot path: 512² short side to 256, centre 224² window, bicubic.
    let mut rng = Rng(512);
    for channels in [3, 4] {
        let src = image(&mut rng, 512 * 512 * channels);
        let geometry = Geometry {
            src: (512, 512),
            area: None,
            dst: (256, 256),
            window: Window {
                x: 16,
                y: 16,
                w: 224,
                h: 224,
            },
        };
        compare(channels, &src, geometry, Filter::Bicubic);
    }
}
