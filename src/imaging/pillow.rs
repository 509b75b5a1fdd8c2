//! What Pillow's `Image.resize` does around the resampler for each image mode, and the
//! `convert("RGB")` the PSR scripts' transform applies after the crop.
//!
//! From Pillow 13's `Image.resize` and `libImaging/Convert.c`:
//! * `RGBA` and `LA` are converted to `RGBa` / `La` (premultiplied: `MULDIV255(v, a)`),
//!   resampled, and converted back (`rgba2rgbA` / `la2lA`: `CLIP8(255 * v / a)` in integer
//!   division, alpha 0 and 255 kept as they are); `convert("RGB")` then drops alpha, so a
//!   cut-out's transparent pixels come out black whatever colour they store;
//! * `P` and `1` are resized with NEAREST whatever filter was asked for;
//! * `CMYK` is resampled per channel in CMYK, then `cmyk2rgb`:
//!   `CLIP8(nk - MULDIV255(c, nk))` with `nk = 255 - k`;
//! * `I;16` is resampled in 16 bits, then `I16_RGB` clamps each sample to 255.
//!
//! A resize to the image's own size with no box is a plain copy (no premultiplication).

use super::resize::{Filter, Geometry, ResizeError, Resizer, Window};

/// An image's pixels as Pillow holds them in its mode (each buffer `width * height` pixels).
#[derive(Debug, Clone, Copy)]
pub enum ModePixels<'a> {
    /// `RGB`, or `L` stored as grey RGB: resampled with the filter asked for.
    Rgb(&'a [u8]),
    /// `P` or `1` stored as the RGB its palette gives: resampled with NEAREST.
    Nearest(&'a [u8]),
    /// `RGBA`, or `LA` stored as grey RGB, with its alpha: premultiplied resampling.
    Alpha { rgb: &'a [u8], alpha: &'a [u8] },
    /// `CMYK`, four bytes a pixel as Pillow decodes them.
    Cmyk(&'a [u8]),
    /// `I;16` samples.
    Grey16(&'a [u16]),
}

/// Per-thread buffers for the modes that resample in another layout than RGB.
#[derive(Debug, Default)]
pub struct ModeScratch {
    /// The premultiplied source (`RGBa`).
    source: Vec<u8>,
    /// The resampled window in four bands.
    quad: Vec<u8>,
    /// The resampled window in 16 bits.
    words: Vec<u16>,
}

impl ModeScratch {
    /// Frees buffers beyond `max_bytes`.
    pub fn shrink_to(&mut self, max_bytes: usize) {
        for buf in [&mut self.source, &mut self.quad] {
            if buf.capacity() > max_bytes {
                *buf = Vec::new();
            }
        }
        if self.words.capacity() * 2 > max_bytes {
            self.words = Vec::new();
        }
    }
}

/// `MULDIV255(a, b)` of `ImagingUtils.h`: `(a * b + 127) / 255` by shifts.
#[inline]
fn muldiv255(a: u8, b: u8) -> i32 {
    let t = i32::from(a) * i32::from(b) + 128;
    ((t >> 8) + t) >> 8
}

/// `RGBA` -> `RGBa` (`rgbA2rgba`): interleaves `rgb` and `alpha` premultiplied into `out`.
pub fn premultiply(rgb: &[u8], alpha: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(alpha.len() * 4);
    for (px, &a) in rgb.chunks_exact(3).zip(alpha) {
        out.extend(px.iter().map(|&v| muldiv255(v, a) as u8));
        out.push(a);
    }
}

/// `RGBa` -> `RGBA` (`rgba2rgbA`), in place on four-band pixels.
pub fn unpremultiply(quad: &mut [u8]) {
    for px in quad.chunks_exact_mut(4) {
        let a = u32::from(px[3]);
        if a != 0 && a != 255 {
            for v in &mut px[..3] {
                *v = ((255 * u32::from(*v)) / a).min(255) as u8;
            }
        }
    }
}

/// `cmyk2rgb` of one pixel.
pub fn cmyk_to_rgb(px: &[u8]) -> [u8; 3] {
    let nk = 255 - px[3];
    [0, 1, 2].map(|c| (i32::from(nk) - muldiv255(px[c], nk)).clamp(0, 255) as u8)
}

/// `I16_RGB`: the grey value, clamped to 255.
pub fn grey16_to_rgb(v: u16) -> u8 {
    v.min(255) as u8
}

/// Computes `geometry.window` of `Image.resize(geometry.dst, filter)` on an image in its own
/// mode, then `convert("RGB")`, into `rgb` (`window.w * window.h * 3` bytes).
pub fn resize_to_rgb(
    resizer: &mut Resizer,
    pixels: ModePixels<'_>,
    geometry: Geometry,
    filter: Filter,
    scratch: &mut ModeScratch,
    rgb: &mut [u8],
) -> Result<(), ResizeError> {
    let (w, h) = geometry.src;
    // `Image.resize` to the same size without a box is a copy: no premultiplication.
    let identity = geometry.dst == geometry.src && geometry.area.is_none();
    let window = geometry.window;
    match pixels {
        ModePixels::Rgb(src) => resizer.resize_window(
            src,
            (w, h),
            geometry.area,
            geometry.dst,
            window,
            rgb,
            filter,
        ),
        ModePixels::Nearest(src) => resizer.nearest_window(src, 3, geometry, rgb),
        ModePixels::Alpha { rgb: src, .. } if identity => {
            resizer.resize_window(src, (w, h), None, geometry.dst, window, rgb, filter)
        }
        ModePixels::Alpha { rgb: src, alpha } => {
            premultiply(src, alpha, &mut scratch.source);
            resize_quad(
                resizer,
                &scratch.source,
                geometry,
                filter,
                &mut scratch.quad,
            )?;
            unpremultiply(&mut scratch.quad);
            for (out, px) in rgb.chunks_exact_mut(3).zip(scratch.quad.chunks_exact(4)) {
                out.copy_from_slice(&px[..3]);
            }
            Ok(())
        }
        ModePixels::Cmyk(src) => {
            resize_quad(resizer, src, geometry, filter, &mut scratch.quad)?;
            for (out, px) in rgb.chunks_exact_mut(3).zip(scratch.quad.chunks_exact(4)) {
                out.copy_from_slice(&cmyk_to_rgb(px));
            }
            Ok(())
        }
        ModePixels::Grey16(src) => {
            let words = &mut scratch.words;
            words.clear();
            words.resize(window_len(window, 1), 0);
            resizer.resize_window_grey16(src, geometry, words, filter)?;
            for (out, &v) in rgb.chunks_exact_mut(3).zip(words.iter()) {
                out.fill(grey16_to_rgb(v));
            }
            Ok(())
        }
    }
}

/// Samples in `window` at `channels` a pixel.
fn window_len(window: Window, channels: usize) -> usize {
    window.w as usize * window.h as usize * channels
}

/// Resamples four-band pixels into `out`, sized for the window.
fn resize_quad(
    resizer: &mut Resizer,
    src: &[u8],
    geometry: Geometry,
    filter: Filter,
    out: &mut Vec<u8>,
) -> Result<(), ResizeError> {
    out.clear();
    out.resize(window_len(geometry.window, 4), 0);
    resizer.resize_window_quad(src, geometry, out, filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premultiplication_round_trips_as_pillow() {
        // 200 at alpha 100: MULDIV255 = (20000 + 128 + 78) >> 8 = 78 (78.43 rounded);
        // back: 255 * 78 / 100 = 198 (integer division), not 200.
        let mut quad = Vec::new();
        premultiply(&[200, 0, 255, 9, 9, 9], &[100, 0], &mut quad);
        assert_eq!(quad, [78, 0, 100, 100, 0, 0, 0, 0]);
        unpremultiply(&mut quad);
        assert_eq!(quad, [198, 0, 255, 100, 0, 0, 0, 0]);
    }

    #[test]
    fn cmyk_and_grey16_convert_as_pillow() {
        // nk = 155; c = 255: 155 - 155 = 0; c = 0: 155; c = 100: 155 - 61 = 94 (60.78 -> 61).
        assert_eq!(cmyk_to_rgb(&[255, 0, 100, 100]), [0, 155, 94]);
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 0]), [255, 255, 255]);
        assert_eq!([grey16_to_rgb(254), grey16_to_rgb(256)], [254, 255]);
    }

    #[test]
    fn a_cut_out_resizes_to_black_where_transparent() {
        // White stored under alpha 0 next to opaque red: Pillow's premultiplied resize makes
        // the transparent side black, where resizing the RGB pixels keeps it white.
        let (w, h) = (8u32, 2u32);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| if i % w < 4 { [255, 0, 0] } else { [255; 3] })
            .collect();
        let alpha: Vec<u8> = (0..w * h)
            .map(|i| if i % w < 4 { 255 } else { 0 })
            .collect();
        let geometry = Geometry {
            src: (w, h),
            area: None,
            dst: (4, 1),
            window: Window::full(4, 1),
        };
        let mut out = vec![0; 12];
        let pixels = ModePixels::Alpha {
            rgb: &rgb,
            alpha: &alpha,
        };
        let mut scratch = ModeScratch::default();
        resize_to_rgb(
            &mut Resizer::new(),
            pixels,
            geometry,
            Filter::Bilinear,
            &mut scratch,
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[9..], [0, 0, 0], "the transparent end is black");
        assert_eq!(&out[..3], [255, 0, 0], "the opaque end stays red");
    }
}
