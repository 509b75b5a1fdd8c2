//! Windowed structural similarity between two thumbnails, per colour channel, under small
//! shifts and a horizontal flip.
//!
//! SSIM and its constant `C2 = (0.03 L)^2` for `L = 255` are from Wang,
//! Bovik, Sheikh and Simoncelli, "Image quality assessment: from error visibility to structural
//! similarity" (IEEE TIP 2004); the window size, stride and texture gate are ours, chosen on
//! the generated evaluation set (see `tests/copy_paste_eval.rs` and the README).

use image::RgbImage;

/// Side of a square window, in thumbnail pixels.
const WINDOW: usize = 8;
/// Step between windows: windows overlap by half.
const STRIDE: usize = 4;
/// A reference window-channel takes part when its standard deviation (0..255) is at least
/// this: on flat patches SSIM is about 1 for any two flat patches of similar level, which would
/// call every honest render of a plain object a paste.
const MIN_STD: f64 = 10.0;
/// Fewest textured window-channels an alignment needs to be scored.
pub(super) const MIN_TEXTURED: usize = 6;
/// Share of the best window-channels averaged: a quarter of the object may be covered or
/// re-rendered (an occluder, a JPEG block) without hiding a paste.
const KEEP: f64 = 0.75;
/// Largest shift tried, in thumbnail pixels (about 10 % of the side): a detector box on a
/// pasted object and the reference's box need not line up to the pixel.
const MAX_SHIFT: i32 = 3;

/// Zoom tried on either side.
const ZOOM: f64 = 1.1;
/// Window means (0..255) this far apart count as about 37 % alike (a Gaussian), twice
/// as far as 2 %.
const LEVEL_TOLERANCE: f64 = 25.0;
const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

/// One channel of a thumbnail as numbers, row-major, with summed-area tables of its values
/// and squares (any window's mean and variance in four look-ups).
struct Plane {
    side: usize,
    v: Vec<f64>,
    /// `(side + 1)^2` prefix sums of values and of squares.
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl Plane {
    /// The three channels of a square image.
    fn of(img: &RgbImage) -> [Plane; 3] {
        let side = img.width() as usize;
        std::array::from_fn(|c| {
            let v: Vec<f64> = img.pixels().map(|p| f64::from(p.0[c])).collect();
            let n = side + 1;
            let (mut sum, mut sum_sq) = (vec![0.0; n * n], vec![0.0; n * n]);
            for y in 0..side {
                for x in 0..side {
                    let a = v[y * side + x];
                    let k = (y + 1) * n + x + 1;
                    sum[k] = a + sum[k - 1] + sum[k - n] - sum[k - n - 1];
                    sum_sq[k] = a * a + sum_sq[k - 1] + sum_sq[k - n] - sum_sq[k - n - 1];
                }
            }
            Plane {
                side,
                v,
                sum,
                sum_sq,
            }
        })
    }

    /// Mean and variance of the window at `(x, y)`.
    fn stats(&self, x: usize, y: usize) -> (f64, f64) {
        let n = self.side + 1;
        let area = |t: &[f64]| {
            t[(y + WINDOW) * n + x + WINDOW] - t[y * n + x + WINDOW] - t[(y + WINDOW) * n + x]
                + t[y * n + x]
        };
        let count = (WINDOW * WINDOW) as f64;
        let mean = area(&self.sum) / count;
        (mean, (area(&self.sum_sq) / count - mean * mean).max(0.0))
    }

    /// Per half-window block of `self` (blocks of `STRIDE` x `STRIDE` on the stride grid),
    /// the sum of its products with `other` shifted by `(dx, dy)`; `None` where the shifted
    /// block leaves `other`. A window is four blocks, so each product is taken once.
    fn block_products(&self, other: &Plane, dx: i32, dy: i32) -> Vec<Option<f64>> {
        let blocks = self.side / STRIDE;
        let mut out = Vec::with_capacity(blocks * blocks);
        for by in 0..blocks {
            for bx in 0..blocks {
                let (x, y) = ((bx * STRIDE) as i32 + dx, (by * STRIDE) as i32 + dy);
                let inside = x >= 0
                    && y >= 0
                    && x as usize + STRIDE <= other.side
                    && y as usize + STRIDE <= other.side;
                out.push(inside.then(|| {
                    let mut s = 0.0;
                    for row in 0..STRIDE {
                        let a = &self.v[(by * STRIDE + row) * self.side + bx * STRIDE..][..STRIDE];
                        let b = &other.v[(y as usize + row) * other.side + x as usize..][..STRIDE];
                        s += a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
                    }
                    s
                }));
            }
        }
        out
    }
}

/// A textured window-channel of the reference: where, which channel, its mean and variance.
struct RefWindow {
    at: (usize, usize),
    channel: usize,
    mean: f64,
    var: f64,
}

/// The reference's textured window-channels, on the stride grid.
fn textured_windows(r: &[Plane; 3]) -> Vec<RefWindow> {
    let side = r[0].side;
    let mut out = Vec::new();
    for y in (0..=side - WINDOW).step_by(STRIDE) {
        for x in (0..=side - WINDOW).step_by(STRIDE) {
            for (channel, plane) in r.iter().enumerate() {
                let (mean, var) = plane.stats(x, y);
                if var.sqrt() >= MIN_STD {
                    out.push(RefWindow {
                        at: (x, y),
                        channel,
                        mean,
                        var,
                    });
                }
            }
        }
    }
    out
}

/// How many window-channels of `r` are textured.
pub(super) fn textured(r: &RgbImage) -> usize {
    textured_windows(&Plane::of(r)).len()
}

/// The best alignment score of `g` against `r` over horizontal flips, a 10 % zoom of either
/// side (box edges placed independently of each other: one box may be looser), and shifts
/// of up to [`MAX_SHIFT`] pixels; both are square, of one size, at least one window.
pub(super) fn best_alignment(r: &RgbImage, g: &RgbImage) -> Option<f64> {
    let pairs = [
        (r.clone(), g.clone()),
        (zoom(r), g.clone()),
        (r.clone(), zoom(g)),
    ];
    pairs
        .iter()
        .flat_map(|(r, g)| {
            [
                shifted_best(r, g),
                shifted_best(r, &image::imageops::flip_horizontal(g)),
            ]
        })
        .flatten()
        .max_by(f64::total_cmp)
}

/// The centre of `img` enlarged by about 10 % back to its size.
fn zoom(img: &RgbImage) -> RgbImage {
    let side = img.width();
    let inner = (f64::from(side) / ZOOM).round() as u32;
    let off = (side - inner) / 2;
    let centre = image::imageops::crop_imm(img, off, off, inner, inner).to_image();
    image::imageops::resize(&centre, side, side, image::imageops::FilterType::Triangle)
}

/// The best alignment score of `g` against `r` over shifts of up to [`MAX_SHIFT`] pixels.
fn shifted_best(r: &RgbImage, g: &RgbImage) -> Option<f64> {
    let reference = Plane::of(r);
    let windows = textured_windows(&reference);
    let planes = Plane::of(g);
    let (side, blocks) = (planes[0].side, planes[0].side / STRIDE);
    let mut best: Option<f64> = None;
    for dy in -MAX_SHIFT..=MAX_SHIFT {
        for dx in -MAX_SHIFT..=MAX_SHIFT {
            let products: Vec<Vec<Option<f64>>> = (0..3)
                .map(|c| reference[c].block_products(&planes[c], dx, dy))
                .collect();
            let mut values = Vec::with_capacity(windows.len());
            for w in &windows {
                let (bx, by) = (w.at.0 / STRIDE, w.at.1 / STRIDE);
                let p = &products[w.channel];
                let quarter = |i: usize, j: usize| p[(by + j) * blocks + bx + i];
                let (Some(a), Some(b), Some(c), Some(d)) =
                    (quarter(0, 0), quarter(1, 0), quarter(0, 1), quarter(1, 1))
                else {
                    continue;
                };
                let at = ((w.at.0 as i32 + dx) as usize, (w.at.1 as i32 + dy) as usize);
                debug_assert!(at.0 + WINDOW <= side && at.1 + WINDOW <= side);
                let (mg, vg) = planes[w.channel].stats(at.0, at.1);
                let cov = (a + b + c + d) / (WINDOW * WINDOW) as f64 - w.mean * mg;
                values.push(similarity(w, mg, vg, cov));
            }
            if let Some(s) = best_share_mean(values) {
                best = Some(best.map_or(s, |b: f64| b.max(s)));
            }
        }
    }
    best
}

/// One window-channel's similarity: SSIM's contrast-structure term times a level term.
/// SSIM's own luminance term, `(2 mx my + C1) / (mx^2 + my^2 + C1)`, forgives a quarter
/// brighter or darker (it models perceived quality); a paste keeps levels within
/// compression noise, a recoloured rendering does not, so levels must agree within
/// [`LEVEL_TOLERANCE`].
fn similarity(w: &RefWindow, mg: f64, vg: f64, cov: f64) -> f64 {
    let level = (-((w.mean - mg) / LEVEL_TOLERANCE).powi(2)).exp();
    level * (2.0 * cov + C2) / (w.var + vg + C2)
}

/// Mean of the best [`KEEP`] share of `values`; `None` for fewer than [`MIN_TEXTURED`].
fn best_share_mean(mut values: Vec<f64>) -> Option<f64> {
    if values.len() < MIN_TEXTURED {
        return None;
    }
    values.sort_by(|a, b| b.total_cmp(a));
    let keep = ((values.len() as f64 * KEEP).ceil() as usize).max(1);
    Some(values[..keep].iter().sum::<f64>() / keep as f64)
}
