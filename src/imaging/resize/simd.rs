//! AVX2 versions of the 8-bit convolution passes (x86_64 only, chosen at run time).
//!
//! They compute what the scalar passes of `kernels` compute, with the same arithmetic: `i32`
//! products of a sample and a 22-bit fixed-point weight, summed from the `HALF` bias, shifted
//! right arithmetically by `PRECISION_BITS` and saturated to `0..=255` (`packs` to `i16`,
//! then `packus` to `u8`, is exactly a clamp to `0..=255`). Integer addition is associative
//! and commutative, so summing the taps in vector lanes gives the scalar sums bit for bit.
//! `resize::simd_tests` compares both on random images; the golden tests run this path
//! against Pillow.

use std::arch::x86_64::{
    __m128i, __m256i, _mm256_add_epi32, _mm256_castsi256_si128, _mm256_cvtepu8_epi32,
    _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_mullo_epi32, _mm256_or_si256,
    _mm256_packs_epi32, _mm256_packus_epi16, _mm256_permutevar8x32_epi32, _mm256_set1_epi32,
    _mm256_set1_epi64x, _mm256_setr_epi32, _mm256_setr_epi8, _mm256_shuffle_epi8,
    _mm256_srai_epi32, _mm256_storeu_si256, _mm_add_epi32, _mm_cvtepu8_epi32, _mm_cvtsi128_si32,
    _mm_cvtsi32_si128, _mm_loadl_epi64, _mm_loadu_si128, _mm_mullo_epi32, _mm_packs_epi32,
    _mm_packus_epi16, _mm_set1_epi32, _mm_srai_epi32, _mm_storel_epi64,
};

use super::kernels::{clip8, HALF};
use super::taps::{Taps, LANES_PER_PIXEL, PRECISION_BITS};

/// The fixed-point shift as the intrinsics take it.
const SHIFT: i32 = PRECISION_BITS as i32;

/// Proof that this CPU has AVX2: only [`Simd::detect`] makes one, so the safe methods below
/// may call the `#[target_feature(enable = "avx2")]` functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Simd(());

impl Simd {
    /// The SIMD kernels, if the CPU running this process supports them.
    pub(super) fn detect() -> Option<Self> {
        is_x86_feature_detected!("avx2").then_some(Self(()))
    }

    /// The 8-bit horizontal pass of `C` bands (as `Bands8::horizontal`).
    pub(super) fn horizontal<const C: usize>(
        self,
        src: &[u8],
        src_w: usize,
        taps: &Taps,
        out: &mut [u8],
    ) {
        // SAFETY: `self` exists only where AVX2 was detected at run time (`Simd::detect`).
        unsafe { horizontal::<C>(src, src_w, taps, out) }
    }

    /// The 8-bit vertical pass (as `Bands8::vertical`).
    pub(super) fn vertical(
        self,
        src: &[u8],
        layout: (usize, usize),
        first: usize,
        taps: &Taps,
        out: &mut [u8],
    ) {
        // SAFETY: `self` exists only where AVX2 was detected at run time (`Simd::detect`).
        unsafe { vertical(src, layout, first, taps, out) }
    }
}

/// Bytes a tap pair's load reads beyond its `k * C` samples: a pair of 3-byte pixels is read
/// as 8 bytes.
const fn overread(channels: usize) -> usize {
    if channels == 3 {
        2
    } else {
        0
    }
}

/// Horizontal pass: every output pixel is a dot product of `k` source pixels with its taps,
/// two taps per 256-bit vector (eight `i32` lanes: two pixels of four lanes, RGB padded with
/// a lane whose sum is discarded).
#[target_feature(enable = "avx2")]
fn horizontal<const C: usize>(src: &[u8], src_w: usize, taps: &Taps, out: &mut [u8]) {
    let k = taps.spans.first().map_or(0, |s| s.len);
    let (row_in, row_out) = (src_w * C, taps.spans.len() * C);
    if row_out == 0 || row_in == 0 {
        return;
    }
    let rows = (src.len() / row_in).min(out.len() / row_out);
    for (y, out_row) in out.chunks_exact_mut(row_out).take(rows).enumerate() {
        let rest = &src[y * row_in..];
        for (px, span) in out_row.chunks_exact_mut(C).zip(&taps.spans) {
            let at = span.start * C;
            let weights = &taps.coeffs[span.coeff..][..k];
            let sums = match rest.get(at..at + k * C + overread(C)) {
                Some(pixels) => {
                    let lanes = &taps.lanes[span.coeff * LANES_PER_PIXEL..][..k * LANES_PER_PIXEL];
                    dot_pixel::<C>(pixels, lanes, k)
                }
                // The row's last pixels at the end of the buffer: no room to over-read.
                None => scalar_pixel::<C>(&rest[at..at + k * C], weights),
            };
            px.copy_from_slice(&sums.to_le_bytes()[..C]);
        }
    }
}

/// One output pixel of the horizontal pass: `k` taps of `pixels` (`k * C` samples, plus
/// [`overread`] bytes that are loaded but weigh nothing in the kept lanes) against `lanes`
/// (each weight four times). Returns the clipped bands in the low bytes, little-endian.
#[inline]
#[target_feature(enable = "avx2")]
fn dot_pixel<const C: usize>(pixels: &[u8], lanes: &[i32], k: usize) -> u32 {
    debug_assert!(pixels.len() >= k * C + overread(C) && lanes.len() >= k * LANES_PER_PIXEL);
    let mut acc = _mm256_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0);
    let mut t = 0;
    while t + 2 <= k {
        // SAFETY: the pair reads `pixels[t * C..t * C + 8]` (C = 4) or `[..t * 3 + 8]` (C = 3),
        // inside `pixels` since `t + 2 <= k` and `pixels.len() >= k * C + overread(C)`; and
        // `lanes[t * 4..t * 4 + 8]`, inside since `lanes.len() >= k * 4`. Unaligned loads.
        unsafe {
            let two = pair::<C>(pixels.as_ptr().add(t * C));
            let w = _mm256_loadu_si256(lanes.as_ptr().add(t * LANES_PER_PIXEL).cast());
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(two, w));
        }
        t += 2;
    }
    let lo = _mm256_castsi256_si128(acc);
    let mut sum = _mm_add_epi32(lo, _mm256_extracti128_si256::<1>(acc));
    if t < k {
        // SAFETY: reads `pixels[t * C..t * C + 4]` (inside: `t = k - 1`, and for C = 3 the
        // fourth byte is within the over-read) and `lanes[t * 4..t * 4 + 4]` (inside).
        unsafe {
            let one = single(pixels.as_ptr().add(t * C));
            let w = _mm_loadu_si128(lanes.as_ptr().add(t * LANES_PER_PIXEL).cast());
            sum = _mm_add_epi32(sum, _mm_mullo_epi32(one, w));
        }
    }
    let shifted = _mm_srai_epi32::<SHIFT>(_mm_add_epi32(sum, _mm_set1_epi32(HALF)));
    let words = _mm_packs_epi32(shifted, shifted);
    _mm_cvtsi128_si32(_mm_packus_epi16(words, words)) as u32
}

/// Two pixels starting at `p` as eight `i32` lanes, four a pixel (for RGB the fourth lane of
/// each is zero): the 8 bytes are broadcast to both 128-bit halves, and one in-half byte
/// shuffle zero-extends the first pixel in the low half and the second in the high half.
///
/// # Safety
/// `p..p + 8` must be readable; AVX2 must be available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn pair<const C: usize>(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 8 readable bytes at `p`; read without alignment.
    let eight = unsafe { p.cast::<i64>().read_unaligned() };
    // Byte `i` of a pixel goes to the low byte of lane `i`; -1 selects zero.
    let o = C as i8;
    let mask = _mm256_setr_epi8(
        0,
        -1,
        -1,
        -1,
        1,
        -1,
        -1,
        -1,
        2,
        -1,
        -1,
        -1,
        3,
        -1,
        -1,
        -1,
        o,
        -1,
        -1,
        -1,
        o + 1,
        -1,
        -1,
        -1,
        o + 2,
        -1,
        -1,
        -1,
        o + 3,
        -1,
        -1,
        -1,
    );
    let mask = if C == 3 {
        // No fourth band: zero lanes 3 and 7.
        _mm256_or_si256(mask, _mm256_setr_epi32(0, 0, 0, -1, 0, 0, 0, -1))
    } else {
        mask
    };
    _mm256_shuffle_epi8(_mm256_set1_epi64x(eight), mask)
}

/// One pixel starting at `p` as four `i32` lanes (for RGB the fourth is the next byte, whose
/// lane is discarded).
///
/// # Safety
/// `p..p + 4` must be readable; AVX2 must be available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn single(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 4 readable bytes at `p`; read without alignment.
    let word = unsafe { p.cast::<i32>().read_unaligned() };
    _mm_cvtepu8_epi32(_mm_cvtsi32_si128(word))
}

/// The scalar sum of one output pixel (the buffer's last pixels, where a vector load would
/// read past the end), in the same little-endian layout as [`dot_pixel`].
fn scalar_pixel<const C: usize>(pixels: &[u8], weights: &[i32]) -> u32 {
    let mut sums = [HALF; 4];
    for (p, &w) in pixels.chunks_exact(C).zip(weights) {
        for (s, &v) in sums.iter_mut().zip(p) {
            *s += i32::from(v) * w;
        }
    }
    u32::from_le_bytes(sums.map(clip8))
}

/// Vertical pass: each output row is the weighted sum of `span.len` source rows, 32 samples
/// (four vectors of eight `i32` lanes) at a time, then 8, then one by one.
#[target_feature(enable = "avx2")]
fn vertical(
    src: &[u8],
    (stride, offset): (usize, usize),
    first: usize,
    taps: &Taps,
    out: &mut [u8],
) {
    let row_len = out.len() / taps.spans.len().max(1);
    if row_len == 0 {
        return;
    }
    for (out_row, span) in out.chunks_exact_mut(row_len).zip(&taps.spans) {
        let weights = &taps.coeffs[span.coeff..span.coeff + span.len];
        let base = (span.start - first) * stride + offset;
        // All tap rows at once: `span.len` rows of `row_len` samples, `stride` apart.
        let end = base + span.len.saturating_sub(1) * stride + row_len;
        let rows = &src[base..end.max(base)];
        let mut x = 0;
        while x + 32 <= row_len {
            let block = vertical_block32(rows, stride, x, weights);
            // SAFETY: `out_row[x..x + 32]` is in bounds (`x + 32 <= row_len`); unaligned store.
            unsafe { _mm256_storeu_si256(out_row[x..x + 32].as_mut_ptr().cast(), block) };
            x += 32;
        }
        while x + 8 <= row_len {
            let block = vertical_block8(rows, stride, x, weights);
            // SAFETY: `out_row[x..x + 8]` is in bounds (`x + 8 <= row_len`); unaligned store.
            unsafe { _mm_storel_epi64(out_row[x..x + 8].as_mut_ptr().cast(), block) };
            x += 8;
        }
        for (i, o) in out_row.iter_mut().enumerate().skip(x) {
            let sum = (0..weights.len()).fold(HALF, |s, k| {
                s + i32::from(rows[k * stride + i]) * weights[k]
            });
            *o = clip8(sum);
        }
    }
}

/// Samples `x..x + 32` of the vertical pass: `rows` holds `weights.len()` rows `stride` apart,
/// each at least `x + 32` samples long (the last one may end there).
#[inline]
#[target_feature(enable = "avx2")]
fn vertical_block32(rows: &[u8], stride: usize, x: usize, weights: &[i32]) -> __m256i {
    let k = weights.len();
    assert!(k == 0 || (k - 1) * stride + x + 32 <= rows.len());
    let half = _mm256_set1_epi32(HALF);
    let (mut a, mut b, mut c, mut d) = (half, half, half, half);
    for (t, &w) in weights.iter().enumerate() {
        let w = _mm256_set1_epi32(w);
        // SAFETY: bytes `t * stride + x..+ 32` lie inside `rows` (asserted above for the last
        // tap row, hence for every earlier one); unaligned 8-byte loads.
        let [p, q, r, s] = unsafe {
            let at = rows.as_ptr().add(t * stride + x);
            [0, 8, 16, 24].map(|i| _mm_loadl_epi64(at.add(i).cast()))
        };
        a = _mm256_add_epi32(a, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(p), w));
        b = _mm256_add_epi32(b, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(q), w));
        c = _mm256_add_epi32(c, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(r), w));
        d = _mm256_add_epi32(d, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(s), w));
    }
    let (a, b) = (_mm256_srai_epi32::<SHIFT>(a), _mm256_srai_epi32::<SHIFT>(b));
    let (c, d) = (_mm256_srai_epi32::<SHIFT>(c), _mm256_srai_epi32::<SHIFT>(d));
    // Packing works within 128-bit halves: bytes come out as a0-3 b0-3 c0-3 d0-3 a4-7 ...
    let packed = _mm256_packus_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Samples `x..x + 8` of the vertical pass (in the low 64 bits), as [`vertical_block32`].
#[inline]
#[target_feature(enable = "avx2")]
fn vertical_block8(rows: &[u8], stride: usize, x: usize, weights: &[i32]) -> __m128i {
    let k = weights.len();
    assert!(k == 0 || (k - 1) * stride + x + 8 <= rows.len());
    let mut acc = _mm256_set1_epi32(HALF);
    for (t, &w) in weights.iter().enumerate() {
        // SAFETY: bytes `t * stride + x..+ 8` lie inside `rows` (asserted above for the last
        // tap row, hence for every earlier one); unaligned load.
        let eight = unsafe { _mm_loadl_epi64(rows.as_ptr().add(t * stride + x).cast()) };
        let product = _mm256_mullo_epi32(_mm256_cvtepu8_epi32(eight), _mm256_set1_epi32(w));
        acc = _mm256_add_epi32(acc, product);
    }
    let shifted = _mm256_srai_epi32::<SHIFT>(acc);
    let lo = _mm256_castsi256_si128(shifted);
    let words = _mm_packs_epi32(lo, _mm256_extracti128_si256::<1>(shifted));
    _mm_packus_epi16(words, words)
}
