//! Byte-exact re-implementation of Pillow's convolution resampling
//! (`Image.resize(size, resample, box)`, libImaging `Resample.c`) for RGB8 images.
//!
//! The models behind the service were trained on Pillow-preprocessed inputs, so the
//! resize must reproduce Pillow bit for bit, including its quirks:
//! * the box is narrowed to `f32` (Pillow parses it with the `"f"` format) before any
//!   maths, and the scale is `(double)(x1 - x0) / out` with the subtraction in `f32`;
//! * per output sample the filter is evaluated over the support scaled by the
//!   downscale factor (antialiasing), normalised by the sum of the weights, then
//!   rounded to 22-bit fixed point (`PRECISION_BITS = 32 - 8 - 2`);
//! * the horizontal pass (only over the source rows the vertical pass will read) runs
//!   first and is rounded and clipped to `u8`, then the vertical pass; a pass is
//!   skipped when its axis is unchanged; an integral box of exactly the output size is
//!   a plain crop.

use thiserror::Error;

/// Fractional bits of the fixed-point weights, as in Pillow: 8 bits of result, two
/// bits of headroom for negative lobes and weight sums above one, and a sign bit.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Rounding bias added to every accumulator (round half up after the shift).
const HALF: i32 = 1 << (PRECISION_BITS - 1);
/// Largest accepted width or height; keeps every coordinate exact in `f32`.
pub const MAX_DIMENSION: u32 = 1 << 24;

/// Resampling filters with Pillow's exact semantics (`Image.Resampling.BILINEAR` and
/// `Image.Resampling.BICUBIC`, the latter with `a = -0.5`).
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

    /// Kernel value at `x`; the operation order mirrors Pillow so results are
    /// bit-identical in `f64`.
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
/// `y0 <= y < y1`. Fractional values are allowed and, as in Pillow, are rounded to
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

/// Why a resize request was rejected; every input is validated up front so the
/// resampler itself cannot panic.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ResizeError {
    /// A source or destination dimension is zero.
    #[error("{which} size {width}x{height} has a zero dimension")]
    ZeroSize {
        /// `"source"` or `"destination"`.
        which: &'static str,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// A dimension exceeds [`MAX_DIMENSION`] or the buffer size overflows `usize`.
    #[error("{which} size {width}x{height} is too large (max {MAX_DIMENSION} per side)")]
    TooLarge {
        /// `"source"` or `"destination"`.
        which: &'static str,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// A buffer's length is not `width * height * 3`.
    #[error("{which} buffer holds {actual} bytes, expected {expected} (RGB8)")]
    BufferLength {
        /// `"source"` or `"destination"`.
        which: &'static str,
        /// Required length in bytes.
        expected: usize,
        /// Length actually passed.
        actual: usize,
    },
    /// The box has a NaN or infinite coordinate.
    #[error("source box {0:?} has a non-finite coordinate")]
    NonFiniteBox(SourceBox),
    /// The box reaches outside `(0, 0, src_w, src_h)`.
    #[error("source box {area:?} lies outside the {width}x{height} image")]
    BoxOutOfBounds {
        /// The offending box.
        area: SourceBox,
        /// Source width.
        width: u32,
        /// Source height.
        height: u32,
    },
    /// The box has zero or negative width or height.
    #[error("source box {0:?} is empty")]
    EmptyBox(SourceBox),
}

/// Source span and coefficient location of one output sample.
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
    /// Unnormalised `f64` weights of the sample being computed.
    weights: Vec<f64>,
}

impl Taps {
    /// Computes Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for mapping
    /// `[in0, in1)` of an axis of `in_size` samples onto `out_size` samples.
    fn compute(&mut self, in_size: u32, in0: f32, in1: f32, out_size: u32, filter: Filter) {
        self.spans.clear();
        self.coeffs.clear();
        let scale = f64::from(in1 - in0) / f64::from(out_size);
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let inv_filterscale = 1.0 / filterscale;
        let in_size = i64::from(in_size);
        for xx in 0..out_size {
            let center = f64::from(in0) + (f64::from(xx) + 0.5) * scale;
            // `as` truncates toward zero, exactly like Pillow's `(int)` casts.
            let xmax = ((center + support + 0.5) as i64).min(in_size);
            let xmin = ((center - support + 0.5) as i64).clamp(0, xmax);
            self.weights.clear();
            self.weights.extend(
                (xmin..xmax).map(|x| filter.weight((x as f64 - center + 0.5) * inv_filterscale)),
            );
            let total: f64 = self.weights.iter().fold(0.0, |sum, &w| sum + w);
            let coeff = self.coeffs.len();
            for &w in &self.weights {
                let w = if total != 0.0 { w / total } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                // Round half away from zero, then truncate: Pillow's normalisation.
                self.coeffs
                    .push(if w < 0.0 { fixed - 0.5 } else { fixed + 0.5 } as i32);
            }
            self.spans.push(Span {
                start: usize::try_from(xmin).unwrap_or(0),
                coeff,
                len: self.coeffs.len() - coeff,
            });
        }
    }
}

/// Reusable scratch buffers and coefficient tables, so repeated resizes do not
/// allocate once warmed up. Keep one per worker thread.
#[derive(Debug, Default)]
pub struct Resizer {
    horizontal: Taps,
    vertical: Taps,
    /// Output of the horizontal pass (only the rows the vertical pass needs).
    temp: Vec<u8>,
    /// One row of vertical-pass accumulators.
    acc: Vec<i32>,
}

impl Resizer {
    /// Creates a resizer with empty scratch buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resizes an interleaved RGB8 image (`src.len() == src_w * src_h * 3`) into `dst`
    /// (`dst.len() == dst_w * dst_h * 3`), byte-identical to Pillow's
    /// `Image.resize((dst_w, dst_h), filter, box)` with `reducing_gap=None`.
    /// `area` is Pillow's `box`; `None` means the whole image.
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
        check_buffer("source", src.len(), src_w, src_h)?;
        check_buffer("destination", dst.len(), dst_w, dst_h)?;
        let [x0, y0, x1, y1] = narrow_box(area, src_w, src_h)?;
        let (sw, dw) = (src_w as usize, dst_w as usize);

        // Pillow's shortcut: an integral box of exactly the output size is a crop.
        if x0 == x0.trunc()
            && y0 == y0.trunc()
            && x1 - x0 == dst_w as f32
            && y1 - y0 == dst_h as f32
        {
            let (cx, cy) = (x0 as usize, y0 as usize);
            for (row, out) in dst.chunks_exact_mut(dw * 3).enumerate() {
                let start = ((cy + row) * sw + cx) * 3;
                out.copy_from_slice(&src[start..start + dw * 3]);
            }
            return Ok(());
        }

        let need_h = dst_w != src_w || x0 != 0.0 || x1 != dst_w as f32;
        let need_v = dst_h != src_h || y0 != 0.0 || y1 != dst_h as f32;
        if need_h {
            self.horizontal.compute(src_w, x0, x1, dst_w, filter);
        }
        if !need_v {
            // Unchanged rows: the horizontal pass writes straight into `dst`.
            horizontal_pass(src, sw, 0, &self.horizontal, dst);
            return Ok(());
        }
        self.vertical.compute(src_h, y0, y1, dst_h, filter);
        if !need_h {
            vertical_pass(src, sw * 3, 0, &self.vertical, dst, &mut self.acc);
            return Ok(());
        }
        // Only the source rows the vertical pass reads go through the first pass.
        let first = self.vertical.spans.first().map_or(0, |s| s.start);
        let last = self.vertical.spans.last().map_or(0, |s| s.start + s.len);
        self.temp.clear();
        self.temp.resize(last.saturating_sub(first) * dw * 3, 0);
        horizontal_pass(src, sw, first, &self.horizontal, &mut self.temp);
        vertical_pass(
            &self.temp,
            dw * 3,
            first,
            &self.vertical,
            dst,
            &mut self.acc,
        );
        Ok(())
    }
}

/// Validates dimensions and that `len == width * height * 3`.
fn check_buffer(
    which: &'static str,
    len: usize,
    width: u32,
    height: u32,
) -> Result<(), ResizeError> {
    if width == 0 || height == 0 {
        return Err(ResizeError::ZeroSize {
            which,
            width,
            height,
        });
    }
    let too_large = ResizeError::TooLarge {
        which,
        width,
        height,
    };
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(too_large);
    }
    let expected = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(3))
        .ok_or(too_large)?;
    if len != expected {
        return Err(ResizeError::BufferLength {
            which,
            expected,
            actual: len,
        });
    }
    Ok(())
}

/// Narrows the box to `f32` as Pillow does and applies its bounds checks (plus a
/// rejection of empty and non-finite boxes, which Pillow would process as garbage).
fn narrow_box(area: Option<SourceBox>, width: u32, height: u32) -> Result<[f32; 4], ResizeError> {
    let Some(area) = area else {
        return Ok([0.0, 0.0, width as f32, height as f32]);
    };
    let b = [
        area.x0 as f32,
        area.y0 as f32,
        area.x1 as f32,
        area.y1 as f32,
    ];
    if !b.iter().all(|v| v.is_finite()) {
        return Err(ResizeError::NonFiniteBox(area));
    }
    if b[0] < 0.0 || b[1] < 0.0 || b[2] > width as f32 || b[3] > height as f32 {
        return Err(ResizeError::BoxOutOfBounds {
            area,
            width,
            height,
        });
    }
    if b[2] - b[0] <= 0.0 || b[3] - b[1] <= 0.0 {
        return Err(ResizeError::EmptyBox(area));
    }
    Ok(b)
}

/// Pillow's `clip8`: drop the fraction bits (arithmetic shift) and saturate.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal convolution of source rows `first..` (as many as `out` holds) of an
/// RGB8 image `src_w` pixels wide. Sums stay far inside `i32`: every normalised
/// weight set has an absolute sum well below 2, so `|acc| < 255 * 2^23 + 2^21`.
fn horizontal_pass(src: &[u8], src_w: usize, first: usize, taps: &Taps, out: &mut [u8]) {
    let out_row_len = taps.spans.len() * 3;
    if out_row_len == 0 {
        return;
    }
    let rows = src.chunks_exact(src_w * 3).skip(first);
    for (out_row, in_row) in out.chunks_exact_mut(out_row_len).zip(rows) {
        for (px, span) in out_row.chunks_exact_mut(3).zip(&taps.spans) {
            let pixels = &in_row[span.start * 3..(span.start + span.len) * 3];
            let weights = &taps.coeffs[span.coeff..span.coeff + span.len];
            let (mut r, mut g, mut b) = (HALF, HALF, HALF);
            for (p, &w) in pixels.chunks_exact(3).zip(weights) {
                r += i32::from(p[0]) * w;
                g += i32::from(p[1]) * w;
                b += i32::from(p[2]) * w;
            }
            px[0] = clip8(r);
            px[1] = clip8(g);
            px[2] = clip8(b);
        }
    }
}

/// Vertical convolution; `src` holds rows starting at source row `first`. Integer
/// sums are order-independent, so accumulating whole rows gives Pillow's exact
/// result with cache-friendly access.
fn vertical_pass(
    src: &[u8],
    row_len: usize,
    first: usize,
    taps: &Taps,
    out: &mut [u8],
    acc: &mut Vec<i32>,
) {
    for (out_row, span) in out.chunks_exact_mut(row_len).zip(&taps.spans) {
        acc.clear();
        acc.resize(row_len, HALF);
        let weights = &taps.coeffs[span.coeff..span.coeff + span.len];
        let start = (span.start - first) * row_len;
        let rows = src[start..start + span.len * row_len].chunks_exact(row_len);
        for (in_row, &w) in rows.zip(weights) {
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

    fn run(
        src: &[u8],
        sw: u32,
        sh: u32,
        area: Option<SourceBox>,
        dw: u32,
        dh: u32,
        f: Filter,
    ) -> Vec<u8> {
        let mut dst = vec![0; (dw * dh * 3) as usize];
        let result = Resizer::new().resize_rgb8(src, sw, sh, area, &mut dst, dw, dh, f);
        assert_eq!(result, Ok(()));
        dst
    }

    fn noise(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7919 % 251) as u8).collect()
    }

    #[test]
    fn identity_size_copies_input() {
        let src = noise(13 * 7 * 3);
        for f in [Filter::Bilinear, Filter::Bicubic] {
            assert_eq!(run(&src, 13, 7, None, 13, 7, f), src);
            let full = SourceBox {
                x0: 0.0,
                y0: 0.0,
                x1: 13.0,
                y1: 7.0,
            };
            assert_eq!(run(&src, 13, 7, Some(full), 13, 7, f), src);
        }
    }

    #[test]
    fn integral_box_of_output_size_is_a_crop() {
        let src = noise(10 * 8 * 3);
        let area = SourceBox {
            x0: 2.0,
            y0: 3.0,
            x1: 6.0,
            y1: 5.0,
        };
        let out = run(&src, 10, 8, Some(area), 4, 2, Filter::Bicubic);
        let expected: Vec<u8> = (3..5)
            .flat_map(|y| src[(y * 10 + 2) * 3..(y * 10 + 6) * 3].to_vec())
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn solid_colour_is_preserved() {
        let colour = [12u8, 200, 255];
        let src: Vec<u8> = colour.iter().copied().cycle().take(37 * 23 * 3).collect();
        let area = Some(SourceBox {
            x0: 1.5,
            y0: 2.25,
            x1: 30.75,
            y1: 20.0,
        });
        for f in [Filter::Bilinear, Filter::Bicubic] {
            for (dw, dh, a) in [
                (80, 50, None),
                (9, 5, None),
                (37, 60, None),
                (50, 23, None),
                (17, 41, area),
            ] {
                let out = run(&src, 37, 23, a, dw, dh, f);
                assert!(out.chunks_exact(3).all(|p| p == colour), "{f:?} {dw}x{dh}");
            }
        }
    }

    #[test]
    fn halving_two_pixels_rounds_half_up() {
        // Weights 0.5/0.5 -> (0 + 255) / 2 = 127.5, which Pillow rounds to 128.
        let out = run(
            &[0, 0, 0, 255, 255, 255],
            2,
            1,
            None,
            1,
            1,
            Filter::Bilinear,
        );
        assert_eq!(out, [128, 128, 128]);
    }

    #[test]
    fn invalid_requests_are_rejected() {
        let mut r = Resizer::new();
        let src = vec![0u8; 4 * 4 * 3];
        let mut dst = vec![0u8; 2 * 2 * 3];
        let mut go = |src: &[u8], sw, area, dst: &mut [u8], dw| {
            r.resize_rgb8(src, sw, 4, area, dst, dw, 2, Filter::Bilinear)
        };
        assert!(matches!(
            go(&[], 0, None, &mut dst, 2),
            Err(ResizeError::ZeroSize { .. })
        ));
        assert!(matches!(
            go(&src, 4, None, &mut [], 0),
            Err(ResizeError::ZeroSize { .. })
        ));
        assert!(matches!(
            go(&src[1..], 4, None, &mut dst, 2),
            Err(ResizeError::BufferLength { .. })
        ));
        assert!(matches!(
            go(&src, 4, None, &mut dst[1..], 2),
            Err(ResizeError::BufferLength { .. })
        ));
        assert!(matches!(
            go(&src, u32::MAX, None, &mut dst, 2),
            Err(ResizeError::TooLarge { .. })
        ));
        let bx = |x0, y0, x1, y1| Some(SourceBox { x0, y0, x1, y1 });
        for area in [
            bx(-1.0, 0.0, 2.0, 2.0),
            bx(0.0, 0.0, 4.5, 2.0),
            bx(0.0, 0.0, 2.0, 4.01),
        ] {
            assert!(matches!(
                go(&src, 4, area, &mut dst, 2),
                Err(ResizeError::BoxOutOfBounds { .. })
            ));
        }
        for area in [bx(2.0, 0.0, 2.0, 2.0), bx(0.0, 3.0, 4.0, 1.0)] {
            assert!(matches!(
                go(&src, 4, area, &mut dst, 2),
                Err(ResizeError::EmptyBox(_))
            ));
        }
        let nan = bx(f64::NAN, 0.0, 2.0, 2.0);
        assert!(matches!(
            go(&src, 4, nan, &mut dst, 2),
            Err(ResizeError::NonFiniteBox(_))
        ));
    }
}
