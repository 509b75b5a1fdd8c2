//! Byte-exact re-implementation of Pillow 13's resampling (`Image.resize(size, resample,
//! box)`, libImaging `Resample.c` and, for NEAREST, `Geometry.c`) for 8-bit images of 3 or 4
//! bands and for 16-bit grey (`I;16`).
//!
//! The models behind the service were trained on Pillow-preprocessed inputs, so the
//! resize must reproduce Pillow bit for bit, including its quirks:
//! * the box is narrowed to `f32` (Pillow parses it with the `"f"` format) before any
//!   maths, and the scale is `(double)(x1 - x0) / out` with the subtraction in `f32`;
//! * per output sample the filter is evaluated over the support scaled by the
//!   downscale factor (antialiasing), normalised by the sum of the weights, then, for
//!   8-bit samples, rounded to 22-bit fixed point (`PRECISION_BITS = 32 - 8 - 2`); 16-bit
//!   samples use the `f64` weights as they are;
//! * each pass rounds and clips to the sample type. The horizontal pass (over only the
//!   source rows the vertical pass reads) runs first, unless the height shrinks by more
//!   than twice as many pixels as the width, in which case the vertical pass runs
//!   first over every column. A pass whose axis is unchanged is skipped, and an
//!   integral box of exactly the output size is a plain crop.
//!
//! What Pillow does around the resampler for each image mode (premultiplied alpha,
//! NEAREST for palettes) lives in `imaging::pillow`.
//!
//! The 8-bit passes have AVX2 versions (`simd`, chosen at run time on x86_64) with the same
//! integer arithmetic, hence the same bytes; [`Resizer::scalar`] keeps the plain ones.

mod kernels;
mod nearest;
#[cfg_attr(not(target_arch = "x86_64"), path = "no_simd.rs")]
mod simd;
#[cfg(test)]
mod simd_tests;
mod taps;
#[cfg(test)]
mod tests;

use thiserror::Error;

use kernels::{Accumulators, Bands8, Grey16, Kernel, Temps};
use simd::Simd;
pub use taps::Filter;
use taps::Taps;

/// Largest accepted width or height; keeps every coordinate exact in `f32`.
pub const MAX_DIMENSION: u32 = 1 << 24;

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
    /// A buffer's length (second field) is not `width * height * channels` (third field).
    #[error("{0} buffer holds {1} samples, expected {2}")]
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

/// Reusable scratch buffers and coefficient tables, so repeated resizes do not
/// allocate once warmed up. Keep one per worker thread.
#[derive(Debug)]
pub struct Resizer {
    /// The SIMD kernels of the 8-bit passes, when this CPU has them and they are wanted.
    simd: Option<Simd>,
    horizontal: Taps,
    vertical: Taps,
    /// Output of the first pass.
    temps: Temps,
    /// One row of vertical-pass accumulators.
    acc: Accumulators,
    /// Source indices of a NEAREST resize, per axis.
    nearest: (Vec<Option<usize>>, Vec<Option<usize>>),
}

/// The geometry of one resize: source size and box, output size, and the window of the
/// output to compute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Source width and height.
    pub src: (u32, u32),
    /// Pillow's `box`; `None` means the whole image.
    pub area: Option<SourceBox>,
    /// Full output width and height.
    pub dst: (u32, u32),
    /// The part of the output to compute.
    pub window: Window,
}

impl Geometry {
    /// Validates the sizes, the box and the window against buffers of `channels` samples a
    /// pixel; returns the box narrowed to `f32`.
    fn check(
        &self,
        src_len: usize,
        dst_len: usize,
        channels: usize,
    ) -> Result<[f32; 4], ResizeError> {
        let ((sw, sh), (dw, dh), window) = (self.src, self.dst, self.window);
        check_buffer("source", src_len, sw, sh, channels)?;
        check_size("destination", dw, dh)?;
        check_window(window, dw, dh)?;
        check_buffer("window", dst_len, window.w, window.h, channels)?;
        narrow_box(self.area, sw, sh)
    }

    /// Pillow's shortcut: an integral box of exactly the output size is a crop. Returns the
    /// crop's top-left corner in the source.
    fn crop_origin(&self, [x0, y0, x1, y1]: [f32; 4]) -> Option<(usize, usize)> {
        let (fw, fh) = (self.dst.0 as f32, self.dst.1 as f32);
        let integral = x0 == x0.trunc() && y0 == y0.trunc();
        (integral && x1 - x0 == fw && y1 - y0 == fh).then(|| {
            (
                (x0 as u32 + self.window.x) as usize,
                (y0 as u32 + self.window.y) as usize,
            )
        })
    }
}

impl Default for Resizer {
    fn default() -> Self {
        Self::with_simd(Simd::detect())
    }
}

impl Resizer {
    /// Creates a resizer with empty scratch buffers, using the SIMD kernels of the 8-bit
    /// passes where the CPU has them (AVX2 on x86_64).
    pub fn new() -> Self {
        Self::default()
    }

    /// A resizer that always runs the scalar 8-bit passes: the reference the SIMD kernels are
    /// tested against, and the "before" of the preprocessing bench. Same bytes, slower.
    pub fn scalar() -> Self {
        Self::with_simd(None)
    }

    fn with_simd(simd: Option<Simd>) -> Self {
        Self {
            simd,
            horizontal: Taps::default(),
            vertical: Taps::default(),
            temps: Temps::default(),
            acc: Accumulators::default(),
            nearest: Default::default(),
        }
    }

    /// Whether this resizer runs the SIMD kernels of the 8-bit passes.
    pub fn uses_simd(&self) -> bool {
        self.simd.is_some()
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

    /// Computes only `window` of the `dst_w`×`dst_h` resize of an RGB8 image into `dst`
    /// (`dst.len() == window.w * window.h * 3`): the same bytes as cropping the full
    /// result, at the cost of the window. Pass order and rounding are decided by the full
    /// sizes, exactly as for the full resize.
    #[allow(clippy::too_many_arguments)]
    pub fn resize_window(
        &mut self,
        src: &[u8],
        src_size: (u32, u32),
        area: Option<SourceBox>,
        dst_size: (u32, u32),
        window: Window,
        dst: &mut [u8],
        filter: Filter,
    ) -> Result<(), ResizeError> {
        let geometry = Geometry {
            src: src_size,
            area,
            dst: dst_size,
            window,
        };
        self.resample::<Bands8<3>>(src, geometry, dst, filter)
    }

    /// [`Resizer::resize_window`] for 8-bit pixels of four bands (Pillow's `RGBa`, `La` as
    /// four bands, `CMYK`): every band is resampled on its own, as Pillow does.
    pub fn resize_window_quad(
        &mut self,
        src: &[u8],
        geometry: Geometry,
        dst: &mut [u8],
        filter: Filter,
    ) -> Result<(), ResizeError> {
        self.resample::<Bands8<4>>(src, geometry, dst, filter)
    }

    /// [`Resizer::resize_window`] for 16-bit grey (Pillow mode `I;16`): `f64` weights, each
    /// pass rounded half away from zero and clipped to `0..=65535`.
    pub fn resize_window_grey16(
        &mut self,
        src: &[u16],
        geometry: Geometry,
        dst: &mut [u16],
        filter: Filter,
    ) -> Result<(), ResizeError> {
        self.resample::<Grey16>(src, geometry, dst, filter)
    }

    /// Pillow's NEAREST resize (what `Image.resize` uses for modes `P` and `1`) of 8-bit
    /// pixels of `channels` bands, computing only `geometry.window`.
    pub fn nearest_window(
        &mut self,
        src: &[u8],
        channels: usize,
        geometry: Geometry,
        dst: &mut [u8],
    ) -> Result<(), ResizeError> {
        let [x0, y0, x1, y1] = geometry.check(src.len(), dst.len(), channels)?;
        let (sw, sh) = geometry.src;
        let w = geometry.window;
        if let Some((cx, cy)) = geometry.crop_origin([x0, y0, x1, y1]) {
            copy_rows(src, (sw as usize, channels), (cx, cy), w.w as usize, dst);
            return Ok(());
        }
        let (xs, ys) = &mut self.nearest;
        nearest::indices((x0, x1), sw, geometry.dst.0, w.x..w.x + w.w, xs);
        nearest::indices((y0, y1), sh, geometry.dst.1, w.y..w.y + w.h, ys);
        nearest::gather(src, sw as usize, channels, (xs, ys), dst);
        Ok(())
    }

    /// The two-pass convolution of one sample layout.
    fn resample<K: Kernel>(
        &mut self,
        src: &[K::Sample],
        geometry: Geometry,
        dst: &mut [K::Sample],
        filter: Filter,
    ) -> Result<(), ResizeError> {
        let c = K::CHANNELS;
        let [x0, y0, x1, y1] = geometry.check(src.len(), dst.len(), c)?;
        let ((src_w, src_h), (dst_w, dst_h), window) =
            (geometry.src, geometry.dst, geometry.window);
        let (sw, ww, wh) = (src_w as usize, window.w as usize, window.h as usize);
        if let Some(origin) = geometry.crop_origin([x0, y0, x1, y1]) {
            copy_rows(src, (sw, c), origin, ww, dst);
            return Ok(());
        }
        let (fw, fh) = (dst_w as f32, dst_h as f32);
        let need_h = dst_w != src_w || x0 != 0.0 || x1 != fw;
        let need_v = dst_h != src_h || y0 != 0.0 || y1 != fh;
        if need_h {
            let cols = window.x..window.x + window.w;
            self.horizontal
                .compute(src_w, (x0, x1), dst_w, cols, filter);
            self.horizontal.make_uniform(sw);
        }
        if need_v {
            let rows = window.y..window.y + window.h;
            self.vertical.compute(src_h, (y0, y1), dst_h, rows, filter);
        }
        // Pillow 13 order rule; it uses the full image sizes, not the box's.
        let shrink_h = i64::from(src_h) - i64::from(dst_h);
        let vertical_first = shrink_h > 0 && shrink_h > 2 * (i64::from(src_w) - i64::from(dst_w));
        let (h, v, acc, simd) = (&self.horizontal, &self.vertical, &mut self.acc, self.simd);
        let temp = K::temp(&mut self.temps);
        let (wx, wy) = (window.x as usize, window.y as usize);
        match (need_h, need_v) {
            // Unreachable after the crop shortcut, kept for completeness.
            (false, false) => copy_rows(src, (sw, c), (wx, wy), ww, dst),
            (true, false) => K::horizontal(&src[wy * sw * c..], sw, h, dst, simd),
            (false, true) => K::vertical(src, (sw * c, wx * c), 0, v, dst, acc, simd),
            (true, true) if vertical_first => {
                temp.clear();
                temp.resize(sw * c * wh, K::Sample::default());
                K::vertical(src, (sw * c, 0), 0, v, temp, acc, simd);
                K::horizontal(temp, sw, h, dst, simd);
            }
            (true, true) => {
                let first = v.spans.first().map_or(0, |s| s.start);
                let last = v.spans.iter().map(|s| s.start + s.len).max().unwrap_or(0);
                temp.clear();
                temp.resize(last.saturating_sub(first) * ww * c, K::Sample::default());
                K::horizontal(&src[first * sw * c..], sw, h, temp, simd);
                K::vertical(temp, (ww * c, 0), first, v, dst, acc, simd);
            }
        }
        Ok(())
    }

    /// Frees scratch capacity beyond `max_bytes`, so one huge request does not pin its
    /// buffers in every worker thread for the rest of the process.
    pub fn shrink_to(&mut self, max_bytes: usize) {
        if self.temps.bytes.capacity() > max_bytes {
            self.temps.bytes = Vec::new();
        }
        if self.temps.words.capacity() * 2 > max_bytes {
            self.temps.words = Vec::new();
        }
        let max_i32 = max_bytes / 4;
        if self.acc.int.capacity() > max_i32 || self.acc.float.capacity() * 2 > max_i32 {
            self.acc = Accumulators::default();
        }
        for taps in [&mut self.horizontal, &mut self.vertical] {
            if taps.larger_than(max_i32) {
                *taps = Taps::default();
            }
        }
        let max_index = max_bytes / 16;
        if self.nearest.0.capacity() > max_index || self.nearest.1.capacity() > max_index {
            self.nearest = Default::default();
        }
    }
}

/// Copies a `w`-pixel-wide column range starting at (`x`, `y`) of `src` (rows of `src_w`
/// pixels of `channels` samples) into the rows of `dst`.
fn copy_rows<T: Copy>(
    src: &[T],
    (src_w, channels): (usize, usize),
    (x, y): (usize, usize),
    w: usize,
    dst: &mut [T],
) {
    for (row, out) in dst.chunks_exact_mut(w * channels).enumerate() {
        let start = ((y + row) * src_w + x) * channels;
        out.copy_from_slice(&src[start..start + w * channels]);
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

/// Validates dimensions and that `len == w * h * channels`.
fn check_buffer(
    which: &'static str,
    len: usize,
    w: u32,
    h: u32,
    channels: usize,
) -> Result<(), ResizeError> {
    check_size(which, w, h)?;
    let expected = (w as usize)
        .checked_mul(h as usize)
        .and_then(|n| n.checked_mul(channels));
    match expected {
        None => Err(ResizeError::TooLarge(which, w, h)),
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
