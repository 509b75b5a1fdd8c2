//! Byte-exact re-implementation of Pillow 13's convolution resampling
//! (`Image.resize(size, resample, box)`, libImaging `Resample.c`) for RGB8 images.
//!
//! The models behind the service were trained on Pillow-preprocessed inputs, so the
//! resize must reproduce Pillow bit for bit, including its quirks:
//! * the box is narrowed to `f32` (Pillow parses it with the `"f"` format) before any
//!   maths, and the scale is `(double)(x1 - x0) / out` with the subtraction in `f32`;
//! * per output sample the filter is evaluated over the support scaled by the
//!   downscale factor (antialiasing), normalised by the sum of the weights, then
//!   rounded to 22-bit fixed point (`PRECISION_BITS = 32 - 8 - 2`);
//! * each pass rounds and clips to `u8`. The horizontal pass (over only the source
//!   rows the vertical pass reads) runs first, unless the height shrinks by more
//!   than twice as many pixels as the width, in which case the vertical pass runs
//!   first over every column. A pass whose axis is unchanged is skipped, and an
//!   integral box of exactly the output size is a plain crop.

use thiserror::Error;

/// Fractional bits of the fixed-point weights, as in Pillow: 8 bits of result, two
/// bits of headroom for negative lobes and weight sums above one, and a sign bit.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Rounding bias added to every accumulator (round half up after the shift).
const HALF: i32 = 1 << (PRECISION_BITS - 1);
/// Largest accepted width or height; keeps every coordinate exact in `f32`.
pub const MAX_DIMENSION: u32 = 1 << 24;

/// Resampling filters with Pillow's exact semantics (`Image.Resampling.BILINEAR`
/// and `Image.Resampling.BICUBIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Triangle filter, support 1 (scaled by the downscale factor).
    Bilinear,
    /// Keys cubic convolution with `a = -0.5`, support 2 (scaled likewise).
    Bicubic,
}

impl Filter {
    /// Half-width of the kernel at scale 1.
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    /// Kernel value at `x`, with Pillow's operation order so `f64` results match.
    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear if x < 1.0 => 1.0 - x,
            Filter::Bicubic if x < 1.0 => (1.5 * x - 2.5) * x * x + 1.0,
            Filter::Bicubic if x < 2.0 => (((x - 5.0) * x + 8.0) * x - 4.0) * -0.5,
            _ => 0.0,
        }
    }
}

/// A source rectangle in pixel coordinates (Pillow's `box`): `x0 <= x < x1`,
/// `y0 <= y < y1`. Fractional values are allowed; as in Pillow they are rounded to
/// `f32` before use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceBox {
    /// Left edge.
    pub x0: f64,
    /// Top edge.
    pub y0: f64,
    /// Right edge (exclusive).
    pub x1: f64,
    /// Bottom edge (exclusive).
    pub y1: f64,
}

/// The part of the output that is actually wanted: `w`×`h` pixels at (`x`, `y`) of the full
/// `dst_w`×`dst_h` result. A centre crop after a resize keeps only such a window, and computing
/// just it bounds memory and time by the window, not by the (possibly huge) resized image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Left column of the window in the full output.
    pub x: u32,
    /// Top row of the window in the full output.
    pub y: u32,
    /// Width of the window.
    pub w: u32,
    /// Height of the window.
    pub h: u32,
}

impl Window {
    /// The whole `w`×`h` output.
    pub fn full(w: u32, h: u32) -> Self {
        Self { x: 0, y: 0, w, h }
    }
}

/// Why a resize request was rejected. All inputs are validated up front, so the
/// resampler itself cannot panic. Size errors carry (buffer, width, height) with
/// buffer `"source"` or `"destination"`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ResizeError {
    /// A width or height is zero.
    #[error("{0} size {1}x{2} has a zero side")]
    ZeroSize(&'static str, u32, u32),
    /// A side exceeds [`MAX_DIMENSION`] or the byte size overflows `usize`.
    #[error("{0} size {1}x{2} is too large (max {MAX_DIMENSION} per side)")]
    TooLarge(&'static str, u32, u32),
    /// A buffer's length (second field) is not `width * height * 3` (third field).
    #[error("{0} buffer holds {1} bytes, expected {2} (RGB8)")]
    BufferLength(&'static str, usize, usize),
    /// The box (after rounding to `f32`) is not finite or leaves the source image.
    #[error("source box {0:?} is not inside the source image")]
    BoxOutOfBounds(SourceBox),
    /// The box has zero or negative width or height (Pillow accepts a zero-width
    /// box and smears one column; the service never wants that).
    #[error("source box {0:?} is empty")]
    EmptyBox(SourceBox),
    /// The output window is empty or not inside the output.
    #[error("output window {0:?} is not inside the {1}x{2} output")]
    WindowOutOfBounds(Window, u32, u32),
}

/// Source window and weight location of one output sample.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// First source index read.
    start: usize,
    /// Offset of this sample's weights in [`Taps::coeffs`].
    coeff: usize,
    /// Number of taps.
    len: usize,
}

/// Fixed-point convolution weights for one axis, reused across calls.
#[derive(Debug, Default)]
struct Taps {
    spans: Vec<Span>,
    coeffs: Vec<i32>,
    /// Unnormalised weights of the sample being computed.
    weights: Vec<f64>,
    /// Scratch for [`Taps::make_uniform`].
    padded: Vec<i32>,
}

impl Taps {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: weights mapping
    /// `[in0, in1)` of an axis of `in_size` samples onto `out_size` samples.
    /// Only the samples in `keep` are computed: each output sample's taps depend on its own
    /// position alone, so a window of the output is exactly that window of the full result.
    fn compute(
        &mut self,
        in_size: u32,
        (in0, in1): (f32, f32),
        out_size: u32,
        keep: std::ops::Range<u32>,
        filter: Filter,
    ) {
        self.spans.clear();
        self.coeffs.clear();
        let scale = f64::from(in1 - in0) / f64::from(out_size);
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let inv_filterscale = 1.0 / filterscale;
        for xx in keep {
            let center = f64::from(in0) + (f64::from(xx) + 0.5) * scale;
            // `as` truncates toward zero, exactly like Pillow's `(int)` casts.
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size));
            let xmin = ((center - support + 0.5) as i64).clamp(0, xmax);
            self.weights.clear();
            self.weights.extend(
                (xmin..xmax).map(|x| filter.weight((x as f64 - center + 0.5) * inv_filterscale)),
            );
            let total = self.weights.iter().fold(0.0, |sum, &w| sum + w);
            let coeff = self.coeffs.len();
            for &w in &self.weights {
                let w = if total != 0.0 { w / total } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                // Round half away from zero, then truncate, as Pillow does.
                self.coeffs
                    .push(if w < 0.0 { fixed - 0.5 } else { fixed + 0.5 } as i32);
            }
            let start = usize::try_from(xmin).unwrap_or(0);
            let len = self.coeffs.len() - coeff;
            self.spans.push(Span { start, coeff, len });
        }
    }

    /// Pads every span with zero weights to the widest span's tap count, shifting
    /// windows left at the far edge so they stay inside `in_size`. Zero terms leave
    /// the integer sums unchanged; a uniform count lets the horizontal pass unroll.
    fn make_uniform(&mut self, in_size: usize) {
        let k = self.spans.iter().map(|s| s.len).max().unwrap_or(0);
        self.padded.clear();
        self.padded.resize(self.spans.len() * k, 0);
        for (i, span) in self.spans.iter_mut().enumerate() {
            let start = span.start.min(in_size.saturating_sub(k));
            let at = i * k + (span.start - start);
            let weights = &self.coeffs[span.coeff..span.coeff + span.len];
            self.padded[at..at + span.len].copy_from_slice(weights);
            let coeff = i * k;
            *span = Span {
                start,
                coeff,
                len: k,
            };
        }
        std::mem::swap(&mut self.coeffs, &mut self.padded);
    }
}

/// Reusable scratch buffers and coefficient tables, so repeated resizes do not
/// allocate once warmed up. Keep one per worker thread.
#[derive(Debug, Default)]
pub struct Resizer {
    horizontal: Taps,
    vertical: Taps,
    /// Output of the first pass.
    temp: Vec<u8>,
    /// One row of vertical-pass accumulators.
    acc: Vec<i32>,
}

impl Resizer {
    /// Creates a resizer with empty scratch buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resizes an interleaved RGB8 image (`src.len() == src_w * src_h * 3`) into
    /// `dst` (`dst.len() == dst_w * dst_h * 3`), byte-identical to Pillow's
    /// `Image.resize((dst_w, dst_h), filter, box)` (`reducing_gap=None`). `area` is
    /// Pillow's `box`; `None` means the whole image.
    #[allow(clippy::too_many_arguments)]
    pub fn resize_rgb8(
        &mut self,
        src: &[u8],
        src_w: u32,
        src_h: u32,
        area: Option<SourceBox>,
        dst: &mut [u8],
        dst_w: u32,
        dst_h: u32,
        filter: Filter,
    ) -> Result<(), ResizeError> {
        let size = (dst_w, dst_h);
        let window = Window::full(dst_w, dst_h);
        self.resize_window(src, (src_w, src_h), area, size, window, dst, filter)
    }

    /// Computes only `window` of the `dst_w`×`dst_h` resize into `dst`
    /// (`dst.len() == window.w * window.h * 3`): the same bytes as cropping the full
    /// result, at the cost of the window. Pass order and rounding are decided by the full
    /// sizes, exactly as for the full resize.
    #[allow(clippy::too_many_arguments)]
    pub fn resize_window(
        &mut self,
        src: &[u8],
        (src_w, src_h): (u32, u32),
        area: Option<SourceBox>,
        (dst_w, dst_h): (u32, u32),
        window: Window,
        dst: &mut [u8],
        filter: Filter,
    ) -> Result<(), ResizeError> {
        check_buffer("source", src.len(), src_w, src_h)?;
        check_size("destination", dst_w, dst_h)?;
        check_window(window, dst_w, dst_h)?;
        check_buffer("window", dst.len(), window.w, window.h)?;
        let [x0, y0, x1, y1] = narrow_box(area, src_w, src_h)?;
        let (sw, ww, wh) = (src_w as usize, window.w as usize, window.h as usize);
        let (fw, fh) = (dst_w as f32, dst_h as f32);

        // Pillow's shortcut: an integral box of exactly the output size is a crop.
        if x0 == x0.trunc() && y0 == y0.trunc() && x1 - x0 == fw && y1 - y0 == fh {
            let (cx, cy) = (
                (x0 as u32 + window.x) as usize,
                (y0 as u32 + window.y) as usize,
            );
            copy_rows(src, sw, cx, cy, ww, dst);
            return Ok(());
        }

        let need_h = dst_w != src_w || x0 != 0.0 || x1 != fw;
        let need_v = dst_h != src_h || y0 != 0.0 || y1 != fh;
        let cols = window.x..window.x + window.w;
        let rows = window.y..window.y + window.h;
        if need_h {
            self.horizontal
                .compute(src_w, (x0, x1), dst_w, cols, filter);
            self.horizontal.make_uniform(sw);
        }
        if need_v {
            self.vertical.compute(src_h, (y0, y1), dst_h, rows, filter);
        }
        // Pillow 13 order rule; it uses the full image sizes, not the box's.
        let shrink_h = i64::from(src_h) - i64::from(dst_h);
        let vertical_first = shrink_h > 0 && shrink_h > 2 * (i64::from(src_w) - i64::from(dst_w));
        let (h, v, acc, temp) = (
            &self.horizontal,
            &self.vertical,
            &mut self.acc,
            &mut self.temp,
        );
        let (wx, wy) = (window.x as usize, window.y as usize);
        match (need_h, need_v) {
            // Unreachable after the crop shortcut, kept for completeness.
            (false, false) => copy_rows(src, sw, wx, wy, ww, dst),
            (true, false) => horizontal_pass(&src[wy * sw * 3..], sw, h, dst),
            (false, true) => vertical_pass(src, (sw * 3, wx * 3), 0, v, dst, acc),
            (true, true) if vertical_first => {
                temp.clear();
                temp.resize(sw * 3 * wh, 0);
                vertical_pass(src, (sw * 3, 0), 0, v, temp, acc);
                horizontal_pass(temp, sw, h, dst);
            }
            (true, true) => {
                let first = v.spans.first().map_or(0, |s| s.start);
                let last = v.spans.iter().map(|s| s.start + s.len).max().unwrap_or(0);
                temp.clear();
                temp.resize(last.saturating_sub(first) * ww * 3, 0);
                horizontal_pass(&src[first * sw * 3..], sw, h, temp);
                vertical_pass(temp, (ww * 3, 0), first, v, dst, acc);
            }
        }
        Ok(())
    }

    /// Frees scratch capacity beyond `max_bytes`, so one huge request does not pin its
    /// buffers in every worker thread for the rest of the process.
    pub fn shrink_to(&mut self, max_bytes: usize) {
        if self.temp.capacity() > max_bytes {
            self.temp = Vec::new();
        }
        let max_i32 = max_bytes / 4;
        if self.acc.capacity() > max_i32 {
            self.acc = Vec::new();
        }
        for taps in [&mut self.horizontal, &mut self.vertical] {
            if taps.coeffs.capacity() > max_i32 || taps.padded.capacity() > max_i32 {
                *taps = Taps::default();
            }
        }
    }
}

/// Copies a `w`-pixel-wide column range starting at (`x`, `y`) of `src` (rows of `src_w`
/// pixels) into the rows of `dst`.
fn copy_rows(src: &[u8], src_w: usize, x: usize, y: usize, w: usize, dst: &mut [u8]) {
    for (row, out) in dst.chunks_exact_mut(w * 3).enumerate() {
        let start = ((y + row) * src_w + x) * 3;
        out.copy_from_slice(&src[start..start + w * 3]);
    }
}

/// Validates an output window against the output size.
fn check_window(window: Window, w: u32, h: u32) -> Result<(), ResizeError> {
    let inside = window.w > 0
        && window.h > 0
        && window.x.checked_add(window.w).is_some_and(|r| r <= w)
        && window.y.checked_add(window.h).is_some_and(|b| b <= h);
    if inside {
        Ok(())
    } else {
        Err(ResizeError::WindowOutOfBounds(window, w, h))
    }
}

/// Validates dimensions without a buffer: non-zero, within [`MAX_DIMENSION`].
fn check_size(which: &'static str, w: u32, h: u32) -> Result<(), ResizeError> {
    if w == 0 || h == 0 {
        return Err(ResizeError::ZeroSize(which, w, h));
    }
    if w > MAX_DIMENSION || h > MAX_DIMENSION {
        return Err(ResizeError::TooLarge(which, w, h));
    }
    Ok(())
}

/// Validates dimensions and that `len == w * h * 3`.
fn check_buffer(which: &'static str, len: usize, w: u32, h: u32) -> Result<(), ResizeError> {
    if w == 0 || h == 0 {
        return Err(ResizeError::ZeroSize(which, w, h));
    }
    let too_large = ResizeError::TooLarge(which, w, h);
    if w > MAX_DIMENSION || h > MAX_DIMENSION {
        return Err(too_large);
    }
    let expected = (w as usize)
        .checked_mul(h as usize)
        .and_then(|n| n.checked_mul(3));
    match expected {
        None => Err(too_large),
        Some(n) if n != len => Err(ResizeError::BufferLength(which, len, n)),
        Some(_) => Ok(()),
    }
}

/// Narrows the box to `f32` as Pillow does and applies Pillow's bounds checks, plus
/// rejection of non-finite and empty boxes.
fn narrow_box(area: Option<SourceBox>, width: u32, height: u32) -> Result<[f32; 4], ResizeError> {
    let Some(area) = area else {
        return Ok([0.0, 0.0, width as f32, height as f32]);
    };
    let [x0, y0, x1, y1] = [area.x0, area.y0, area.x1, area.y1].map(|v| v as f32);
    let inside = x0 >= 0.0 && y0 >= 0.0 && x1 <= width as f32 && y1 <= height as f32;
    if !inside || ![x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
        return Err(ResizeError::BoxOutOfBounds(area));
    }
    if x1 - x0 <= 0.0 || y1 - y0 <= 0.0 {
        return Err(ResizeError::EmptyBox(area));
    }
    Ok([x0, y0, x1, y1])
}

/// Pillow's `clip8`: drop the fraction bits (arithmetic shift) and saturate.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal convolution of the rows of `src` (RGB8, `src_w` pixels wide) into the
/// rows of `out`, with uniform taps (see [`Taps::make_uniform`]). Common tap counts
/// get a constant trip count so the tap loop unrolls.
fn horizontal_pass(src: &[u8], src_w: usize, taps: &Taps, out: &mut [u8]) {
    match taps.spans.first().map_or(0, |s| s.len) {
        2 => horizontal_kernel(src, src_w, taps, out, 2),
        3 => horizontal_kernel(src, src_w, taps, out, 3),
        4 => horizontal_kernel(src, src_w, taps, out, 4),
        5 => horizontal_kernel(src, src_w, taps, out, 5),
        6 => horizontal_kernel(src, src_w, taps, out, 6),
        k => horizontal_kernel(src, src_w, taps, out, k),
    }
}

/// Body of [`horizontal_pass`] for `k` taps per output pixel. Sums stay far inside
/// `i32`: each normalised weight set has an absolute sum below 2.
#[inline(always)]
fn horizontal_kernel(src: &[u8], src_w: usize, taps: &Taps, out: &mut [u8], k: usize) {
    let rows = src.chunks_exact(src_w * 3);
    for (out_row, in_row) in out.chunks_exact_mut(taps.spans.len() * 3).zip(rows) {
        for (px, span) in out_row.chunks_exact_mut(3).zip(&taps.spans) {
            let pixels = &in_row[span.start * 3..][..k * 3];
            let weights = &taps.coeffs[span.coeff..][..k];
            let (mut r, mut g, mut b) = (HALF, HALF, HALF);
            for (p, &w) in pixels.chunks_exact(3).zip(weights) {
                r += i32::from(p[0]) * w;
                g += i32::from(p[1]) * w;
                b += i32::from(p[2]) * w;
            }
            px.copy_from_slice(&[clip8(r), clip8(g), clip8(b)]);
        }
    }
}

/// Vertical convolution into `out` (one row per span). `src` rows are `stride` bytes apart,
/// start at source row `first`, and the output's columns begin `offset` bytes into each row.
/// Integer sums are order-independent, so accumulating whole rows gives Pillow's exact
/// result with vectorisable access.
fn vertical_pass(
    src: &[u8],
    (stride, offset): (usize, usize),
    first: usize,
    taps: &Taps,
    out: &mut [u8],
    acc: &mut Vec<i32>,
) {
    let row_len = out.len() / taps.spans.len().max(1);
    for (out_row, span) in out.chunks_exact_mut(row_len).zip(&taps.spans) {
        acc.clear();
        acc.resize(row_len, HALF);
        let weights = &taps.coeffs[span.coeff..span.coeff + span.len];
        for (k, &w) in weights.iter().enumerate() {
            let start = (span.start - first + k) * stride + offset;
            let in_row = &src[start..start + row_len];
            for (a, &p) in acc.iter_mut().zip(in_row) {
                *a += i32::from(p) * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(acc.iter()) {
            *o = clip8(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILTERS: [Filter; 2] = [Filter::Bilinear, Filter::Bicubic];
    type Size = (u32, u32);
    type ErrorCase<'a> = (&'a [u8], u32, Option<SourceBox>, usize, u32, &'a str);

    /// Resizes `src` to `(dw, dh)` with a fresh resizer, asserting success.
    fn run(
        src: &[u8],
        (sw, sh): Size,
        area: Option<SourceBox>,
        (dw, dh): Size,
        f: Filter,
    ) -> Vec<u8> {
        let mut dst = vec![0; (dw * dh * 3) as usize];
        let result = Resizer::new().resize_rgb8(src, sw, sh, area, &mut dst, dw, dh, f);
        assert_eq!(result, Ok(()));
        dst
    }

    fn bx(x0: f64, y0: f64, x1: f64, y1: f64) -> Option<SourceBox> {
        Some(SourceBox { x0, y0, x1, y1 })
    }

    fn noise(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7919 % 251) as u8).collect()
    }

    #[test]
    fn identity_size_copies_input() {
        let src = noise(13 * 7 * 3);
        for f in FILTERS {
            assert_eq!(run(&src, (13, 7), None, (13, 7), f), src);
            assert_eq!(run(&src, (13, 7), bx(0.0, 0.0, 13.0, 7.0), (13, 7), f), src);
        }
    }

    #[test]
    fn integral_box_of_output_size_is_a_crop() {
        let src = noise(10 * 8 * 3);
        let rows = (3..5).map(|y| &src[(y * 10 + 2) * 3..(y * 10 + 6) * 3]);
        let expected: Vec<u8> = rows.flatten().copied().collect();
        let area = bx(2.0, 3.0, 6.0, 5.0);
        assert_eq!(run(&src, (10, 8), area, (4, 2), Filter::Bicubic), expected);
    }

    #[test]
    fn solid_colour_is_preserved() {
        let colour = [12u8, 200, 255];
        let src: Vec<u8> = colour.iter().copied().cycle().take(37 * 23 * 3).collect();
        // Up, down, one axis only, vertical-first order, and a fractional box.
        let mut cases = [(80, 50), (9, 5), (37, 60), (50, 23), (36, 4)]
            .map(|s| (s, None))
            .to_vec();
        cases.push(((17, 41), bx(1.5, 2.25, 30.75, 20.0)));
        for f in FILTERS {
            for &(size, area) in &cases {
                let out = run(&src, (37, 23), area, size, f);
                assert!(out.chunks_exact(3).all(|p| p == colour), "{f:?} {size:?}");
            }
        }
    }

    #[test]
    fn halving_two_pixels_rounds_half_up() {
        // Weights 0.5 / 0.5: (0 + 255) / 2 = 127.5, which Pillow rounds to 128.
        let out = run(
            &[0, 0, 0, 255, 255, 255],
            (2, 1),
            None,
            (1, 1),
            Filter::Bilinear,
        );
        assert_eq!(out, [128; 3]);
    }

    #[test]
    fn invalid_requests_are_rejected() {
        let src = noise(4 * 4 * 3);
        let mut dst = vec![0u8; 2 * 2 * 3];
        let (ok, nan) = (bx(0.5, 0.5, 3.5, 3.5), bx(f64::NAN, 0.0, 2.0, 2.0));
        let cases: [ErrorCase; 11] = [
            (&[], 0, None, 12, 2, "ZeroSize"),
            (&src, 4, None, 0, 0, "ZeroSize"),
            (&src[1..], 4, ok, 12, 2, "BufferLength"),
            (&src, 4, ok, 11, 2, "BufferLength"),
            (&src, u32::MAX, None, 12, 2, "TooLarge"),
            (&src, 4, bx(-1.0, 0.0, 2.0, 2.0), 12, 2, "BoxOutOfBounds"),
            (&src, 4, bx(0.0, 0.0, 4.5, 2.0), 12, 2, "BoxOutOfBounds"),
            (&src, 4, bx(0.0, 0.0, 2.0, 4.01), 12, 2, "BoxOutOfBounds"),
            (&src, 4, nan, 12, 2, "BoxOutOfBounds"),
            (&src, 4, bx(2.0, 0.0, 2.0, 2.0), 12, 2, "EmptyBox"),
            (&src, 4, bx(0.0, 3.0, 4.0, 1.0), 12, 2, "EmptyBox"),
        ];
        let mut resizer = Resizer::new();
        for (input, sw, area, len, dw, expected) in cases {
            let result =
                resizer.resize_rgb8(input, sw, 4, area, &mut dst[..len], dw, 2, FILTERS[1]);
            let err = format!("{:?}", result.err());
            assert!(
                err.starts_with(&format!("Some({expected}")),
                "{err} for {area:?}"
            );
        }
        assert_eq!(dst, [0; 12], "rejected calls must not write");
    }
}
