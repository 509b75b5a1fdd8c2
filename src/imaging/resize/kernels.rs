//! The convolution passes, per sample layout: 8-bit pixels of 3 or 4 bands (Pillow's
//! `ImagingResample{Horizontal,Vertical}_8bpc`: fixed-point weights, each pass rounded and
//! clipped to `u8`) and 16-bit grey (`_16bpc`: unquantised `f64` weights, `ROUND_UP`, clipped
//! to `u16`).

use super::simd::Simd;
use super::taps::{Taps, PRECISION_BITS};

/// Rounding bias added to every 8-bit accumulator (round half up after the shift).
pub(super) const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Per-thread accumulator rows of the vertical passes.
#[derive(Debug, Default)]
pub(super) struct Accumulators {
    pub(super) int: Vec<i32>,
    pub(super) float: Vec<f64>,
}

/// Intermediate images between the passes, one per sample type.
#[derive(Debug, Default)]
pub(super) struct Temps {
    pub(super) bytes: Vec<u8>,
    pub(super) words: Vec<u16>,
}

/// One sample layout's passes. `CHANNELS` samples make a pixel.
pub(super) trait Kernel {
    type Sample: Copy + Default;
    const CHANNELS: usize;
    /// Horizontal convolution of the rows of `src` (`src_w` pixels wide) into the rows of
    /// `out`, with uniform taps (see [`Taps::make_uniform`]); with the SIMD kernels when
    /// `simd` is given and the layout has them.
    fn horizontal(
        src: &[Self::Sample],
        src_w: usize,
        taps: &Taps,
        out: &mut [Self::Sample],
        simd: Option<Simd>,
    );
    /// Vertical convolution into `out` (one row per span). `src` rows are `stride` samples
    /// apart, start at source row `first`, and the output's columns begin `offset` samples
    /// into each row.
    fn vertical(
        src: &[Self::Sample],
        layout: (usize, usize),
        first: usize,
        taps: &Taps,
        out: &mut [Self::Sample],
        acc: &mut Accumulators,
        simd: Option<Simd>,
    );
    /// This layout's intermediate buffer.
    fn temp(temps: &mut Temps) -> &mut Vec<Self::Sample>;
}

/// Interleaved 8-bit pixels of `C` bands, 3 (RGB) or 4 (RGBa, La as four bands, CMYK).
pub(super) struct Bands8<const C: usize>;

impl<const C: usize> Kernel for Bands8<C> {
    type Sample = u8;
    const CHANNELS: usize = C;

    fn horizontal(src: &[u8], src_w: usize, taps: &Taps, out: &mut [u8], simd: Option<Simd>) {
        const { assert!(C == 3 || C == 4, "three or four bands") };
        if let Some(simd) = simd {
            return simd.horizontal::<C>(src, src_w, taps, out);
        }
        // Common tap counts get a constant trip count so the tap loop unrolls.
        match taps.spans.first().map_or(0, |s| s.len) {
            2 => horizontal_8bit::<C>(src, src_w, taps, out, 2),
            3 => horizontal_8bit::<C>(src, src_w, taps, out, 3),
            4 => horizontal_8bit::<C>(src, src_w, taps, out, 4),
            5 => horizontal_8bit::<C>(src, src_w, taps, out, 5),
            6 => horizontal_8bit::<C>(src, src_w, taps, out, 6),
            k => horizontal_8bit::<C>(src, src_w, taps, out, k),
        }
    }

    fn vertical(
        src: &[u8],
        (stride, offset): (usize, usize),
        first: usize,
        taps: &Taps,
        out: &mut [u8],
        acc: &mut Accumulators,
        simd: Option<Simd>,
    ) {
        if let Some(simd) = simd {
            return simd.vertical(src, (stride, offset), first, taps, out);
        }
        // Integer sums are order-independent, so accumulating whole rows gives Pillow's
        // exact result with vectorisable access.
        let acc = &mut acc.int;
        let row_len = out.len() / taps.spans.len().max(1);
        for (out_row, span) in out.chunks_exact_mut(row_len).zip(&taps.spans) {
            acc.clear();
            acc.resize(row_len, HALF);
            let weights = &taps.coeffs[span.coeff..span.coeff + span.len];
            for (k, &w) in weights.iter().enumerate() {
                let start = (span.start - first + k) * stride + offset;
                for (a, &p) in acc.iter_mut().zip(&src[start..start + row_len]) {
                    *a += i32::from(p) * w;
                }
            }
            for (o, &a) in out_row.iter_mut().zip(acc.iter()) {
                *o = clip8(a);
            }
        }
    }

    fn temp(temps: &mut Temps) -> &mut Vec<u8> {
        &mut temps.bytes
    }
}

/// Pillow's `clip8`: drop the fraction bits (arithmetic shift) and saturate.
#[inline]
pub(super) fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Body of the 8-bit horizontal pass for `k` taps per output pixel. Sums stay far inside
/// `i32`: each normalised weight set has an absolute sum below 2. The bands are written out
/// (scalar accumulators, not an array) so the tap loop stays as fast as a hand-written one
/// even at low optimisation levels.
#[inline(always)]
fn horizontal_8bit<const C: usize>(
    src: &[u8],
    src_w: usize,
    taps: &Taps,
    out: &mut [u8],
    k: usize,
) {
    let rows = src.chunks_exact(src_w * C);
    for (out_row, in_row) in out.chunks_exact_mut(taps.spans.len() * C).zip(rows) {
        for (px, span) in out_row.chunks_exact_mut(C).zip(&taps.spans) {
            let pixels = &in_row[span.start * C..][..k * C];
            let weights = &taps.coeffs[span.coeff..][..k];
            let (mut s0, mut s1, mut s2, mut s3) = (HALF, HALF, HALF, HALF);
            for (p, &w) in pixels.chunks_exact(C).zip(weights) {
                s0 += i32::from(p[0]) * w;
                s1 += i32::from(p[1]) * w;
                s2 += i32::from(p[2]) * w;
                if C == 4 {
                    s3 += i32::from(p[3]) * w;
                }
            }
            px[0] = clip8(s0);
            px[1] = clip8(s1);
            px[2] = clip8(s2);
            if C == 4 {
                px[3] = clip8(s3);
            }
        }
    }
}

/// 16-bit grey (Pillow mode `I;16`).
pub(super) struct Grey16;

/// Pillow's `CLIP16(ROUND_UP(ss))`: round half away from zero (the `0.5F` is exact in
/// `double`), truncate, saturate.
#[inline]
fn round_clip16(ss: f64) -> u16 {
    let rounded = if ss >= 0.0 { ss + 0.5 } else { ss - 0.5 } as i64;
    rounded.clamp(0, 65535) as u16
}

impl Kernel for Grey16 {
    type Sample = u16;
    const CHANNELS: usize = 1;

    fn horizontal(src: &[u16], src_w: usize, taps: &Taps, out: &mut [u16], _: Option<Simd>) {
        for (out_row, in_row) in out
            .chunks_exact_mut(taps.spans.len())
            .zip(src.chunks_exact(src_w))
        {
            for (o, span) in out_row.iter_mut().zip(&taps.spans) {
                let samples = &in_row[span.start..][..span.len];
                let weights = &taps.exact[span.coeff..][..span.len];
                // Summed in tap order, as Pillow's loop does (f64 sums are order-dependent).
                let ss = samples
                    .iter()
                    .zip(weights)
                    .fold(0.0, |ss, (&v, &w)| ss + f64::from(v) * w);
                *o = round_clip16(ss);
            }
        }
    }

    fn vertical(
        src: &[u16],
        (stride, offset): (usize, usize),
        first: usize,
        taps: &Taps,
        out: &mut [u16],
        acc: &mut Accumulators,
        _: Option<Simd>,
    ) {
        // Row-wise accumulation adds each column's taps in the same order as Pillow's
        // per-column loop, so the f64 sums are identical.
        let acc = &mut acc.float;
        let row_len = out.len() / taps.spans.len().max(1);
        for (out_row, span) in out.chunks_exact_mut(row_len).zip(&taps.spans) {
            acc.clear();
            acc.resize(row_len, 0.0);
            let weights = &taps.exact[span.coeff..span.coeff + span.len];
            for (k, &w) in weights.iter().enumerate() {
                let start = (span.start - first + k) * stride + offset;
                for (a, &p) in acc.iter_mut().zip(&src[start..start + row_len]) {
                    *a += f64::from(p) * w;
                }
            }
            for (o, &a) in out_row.iter_mut().zip(acc.iter()) {
                *o = round_clip16(a);
            }
        }
    }

    fn temp(temps: &mut Temps) -> &mut Vec<u16> {
        &mut temps.words
    }
}
