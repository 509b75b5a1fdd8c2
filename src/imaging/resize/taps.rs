//! Resampling filters and their per-axis convolution weights (Pillow's `precompute_coeffs`,
//! `normalize_coeffs_8bpc`), shared by the 8-bit and 16-bit kernels.

/// Fractional bits of the fixed-point weights, as in Pillow: 8 bits of result, two
/// bits of headroom for negative lobes and weight sums above one, and a sign bit.
pub(super) const PRECISION_BITS: u32 = 32 - 8 - 2;

/// `i32` lanes a pixel takes in the SIMD kernels' vectors (three or four bands, padded to
/// four).
pub(super) const LANES_PER_PIXEL: usize = 4;

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

/// Source window and weight location of one output sample.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    /// First source index read.
    pub(super) start: usize,
    /// Offset of this sample's weights in [`Taps::coeffs`] and [`Taps::exact`].
    pub(super) coeff: usize,
    /// Number of taps.
    pub(super) len: usize,
}

/// Convolution weights for one axis, reused across calls: fixed point for 8-bit samples,
/// and the normalised `f64` weights themselves, which Pillow's 16-bit kernels use unrounded.
#[derive(Debug, Default)]
pub(super) struct Taps {
    pub(super) spans: Vec<Span>,
    pub(super) coeffs: Vec<i32>,
    pub(super) exact: Vec<f64>,
    /// Each of [`Taps::coeffs`] four times over, one per `i32` lane of a pixel: the weight
    /// vectors of the SIMD horizontal pass, filled by [`Taps::make_uniform`].
    pub(super) lanes: Vec<i32>,
    /// Unnormalised weights of the sample being computed.
    weights: Vec<f64>,
    /// Scratch for [`Taps::make_uniform`].
    padded: Vec<i32>,
    padded_exact: Vec<f64>,
}

impl Taps {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: weights mapping
    /// `[in0, in1)` of an axis of `in_size` samples onto `out_size` samples.
    /// Only the samples in `keep` are computed: each output sample's taps depend on its own
    /// position alone, so a window of the output is exactly that window of the full result.
    pub(super) fn compute(
        &mut self,
        in_size: u32,
        (in0, in1): (f32, f32),
        out_size: u32,
        keep: std::ops::Range<u32>,
        filter: Filter,
    ) {
        self.spans.clear();
        self.coeffs.clear();
        self.exact.clear();
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
                self.exact.push(w);
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
    /// the sums unchanged (integer sums exactly; `f64` sums too, as `s + v * 0.0 == s`);
    /// a uniform count lets the horizontal pass unroll.
    pub(super) fn make_uniform(&mut self, in_size: usize) {
        let k = self.spans.iter().map(|s| s.len).max().unwrap_or(0);
        self.padded.clear();
        self.padded.resize(self.spans.len() * k, 0);
        self.padded_exact.clear();
        self.padded_exact.resize(self.spans.len() * k, 0.0);
        for (i, span) in self.spans.iter_mut().enumerate() {
            let start = span.start.min(in_size.saturating_sub(k));
            let at = i * k + (span.start - start);
            let range = span.coeff..span.coeff + span.len;
            self.padded[at..at + span.len].copy_from_slice(&self.coeffs[range.clone()]);
            self.padded_exact[at..at + span.len].copy_from_slice(&self.exact[range]);
            *span = Span {
                start,
                coeff: i * k,
                len: k,
            };
        }
        std::mem::swap(&mut self.coeffs, &mut self.padded);
        std::mem::swap(&mut self.exact, &mut self.padded_exact);
        self.lanes.clear();
        self.lanes
            .extend(self.coeffs.iter().flat_map(|&w| [w; LANES_PER_PIXEL]));
    }

    /// Whether the weight tables hold more than `max_i32` entries (to free them).
    pub(super) fn larger_than(&self, max_i32: usize) -> bool {
        [self.coeffs.capacity(), self.padded.capacity()]
            .into_iter()
            .chain([self.lanes.capacity()])
            .chain([self.exact.capacity(), self.padded_exact.capacity()].map(|c| c * 2))
            .any(|c| c > max_i32)
    }
}
