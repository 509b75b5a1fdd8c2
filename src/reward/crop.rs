//! From a detector box to the pixels that get embedded, exactly as the PSR scripts do it, or
//! clamped to the image when asked.
//!
//! The scripts scale the normalised box to the original size, convert cx,cy,w,h to corners in
//! float32, truncate each corner with Python's `int()`, then crop with numpy slicing
//! `img[y1:y2, x1:x2]`: negative starts wrap around from the end, ends are clamped, and an
//! empty slice makes the later resize raise, so the script falls back to the whole image.

use image::RgbImage;

/// Integer box `[x1, y1, x2, y2]` after Python's `int()` (truncation toward zero).
pub fn truncate_box(b: [f32; 4]) -> [i64; 4] {
    b.map(|v| v.trunc() as i64)
}

/// Python slice bounds `[start:stop]` on a length-`n` axis.
fn py_slice(start: i64, stop: i64, n: i64) -> (i64, i64) {
    let norm = |i: i64| if i < 0 { (i + n).max(0) } else { i.min(n) };
    let (a, b) = (norm(start), norm(stop));
    (a, b.max(a))
}

/// A pixel window `(x0, y0, x1, y1)`, end-exclusive.
pub type Window = (u32, u32, u32, u32);

/// How crop bounds are derived from a truncated box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropRule {
    /// numpy slicing, as the PSR scripts (negative coordinates wrap around).
    PythonSlice,
    /// Clamp each coordinate into the image first.
    Clamp,
}

/// The pixel window `(x0, y0, x1, y1)` a box selects, or `None` when it is empty.
pub fn window(b: [i64; 4], w: u32, h: u32, rule: CropRule) -> Option<Window> {
    let (w, h) = (i64::from(w), i64::from(h));
    let ((x0, x1), (y0, y1)) = match rule {
        CropRule::PythonSlice => (py_slice(b[0], b[2], w), py_slice(b[1], b[3], h)),
        CropRule::Clamp => {
            let cx = |v: i64| v.clamp(0, w);
            let cy = |v: i64| v.clamp(0, h);
            (
                (cx(b[0]), cx(b[2]).max(cx(b[0]))),
                (cy(b[1]), cy(b[3]).max(cy(b[1]))),
            )
        }
    };
    (x1 > x0 && y1 > y0).then_some((x0 as u32, y0 as u32, x1 as u32, y1 as u32))
}

/// Copies a window out of an image.
pub fn crop(img: &RgbImage, (x0, y0, x1, y1): Window) -> RgbImage {
    image::imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_is_toward_zero() {
        assert_eq!(truncate_box([-0.5, 1.9, 10.99, -1.5]), [0, 1, 10, -1]);
    }

    #[test]
    fn python_slicing_wraps_negative_starts() {
        // x1 = -3 on a width of 100 starts at 97: with x2 = 50 the slice is empty.
        assert_eq!(
            window([-3, 0, 50, 10], 100, 20, CropRule::PythonSlice),
            None
        );
        // ... but clamping keeps [0, 50).
        assert_eq!(
            window([-3, 0, 50, 10], 100, 20, CropRule::Clamp),
            Some((0, 0, 50, 10))
        );
        // Ends past the image are clamped by slicing too.
        assert_eq!(
            window([90, 5, 130, 40], 100, 20, CropRule::PythonSlice),
            Some((90, 5, 100, 20))
        );
        // A start of -3 with an end past it keeps the last 3 columns.
        assert_eq!(
            window([-3, 0, 100, 20], 100, 20, CropRule::PythonSlice),
            Some((97, 0, 100, 20))
        );
        assert_eq!(
            window([10, 10, 10, 20], 100, 20, CropRule::PythonSlice),
            None
        );
    }

    #[test]
    fn crop_copies_pixels() {
        let img = RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let c = crop(&img, (1, 1, 3, 3));
        assert_eq!(c.dimensions(), (2, 2));
        assert_eq!(c.get_pixel(0, 0).0, [1, 1, 0]);
        assert_eq!(c.get_pixel(1, 1).0, [2, 2, 0]);
    }
}
