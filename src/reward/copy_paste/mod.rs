//! The copy-paste guard: how literally a subject's generated crop reproduces its reference
//! crop at the pixel level.
//!
//! The PSR paper names the hack: a generator that learns to paste the reference into its
//! output earns a perfect subject consistency, since the embedder cannot tell a paste from a
//! faithful new rendering. A paste, though, keeps the reference's pixels: its texture lines up
//! with the reference's wherever the object is visible, after the scaling, small shifts, flips
//! and JPEG re-encoding it goes through. A new rendering of the same object (another pose,
//! colour or texture) keeps the identity but not the pixels.
//!
//! Method: both crops are reduced to 32x32 RGB thumbnails by area averaging (which undoes
//! scale and removes most JPEG block noise); the reference's thumbnail is kept in the
//! reference cache. On the reference's textured 8x8 windows (stride 4, per channel) the score
//! is SSIM's contrast-structure term times a strict level term (see `ssim.rs`), averaged over
//! the best 75 % of the windows (an occluder or a re-rendered part may spoil a quarter), and
//! maximised over a horizontal flip, a 10 % zoom of either side and shifts of up to 3 pixels.
//! Why SSIM rather than a perceptual hash or plain correlation: a hash is one global bit
//! string that a partial occlusion or a flip breaks as a whole, and normalised
//! cross-correlation ignores contrast and brightness, so a recoloured copy of the same
//! drawing (an honest "same object, other colour") would look pasted; the level and
//! contrast terms keep those apart while its windows stay local. A reference without texture
//! (a flat patch) has no score: a paste of it cannot be told from an honest flat render.

mod policy;
mod ssim;

use image::RgbImage;
use serde::Serialize;

pub use policy::{CopyPasteConfig, CopyPasteOverrides, CopyPastePolicy};

/// Side of the thumbnails the guard compares, in pixels.
pub const SIDE: u32 = 32;

/// A crop reduced to `SIDE` x `SIDE` for the guard (3 KiB).
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail(RgbImage);

impl Thumbnail {
    /// Reduces a crop (of any size) by area averaging; `None` for an empty one.
    pub fn of(crop: &RgbImage) -> Option<Self> {
        let (w, h) = crop.dimensions();
        (w > 0 && h > 0).then(|| Self(image::imageops::thumbnail(crop, SIDE, SIDE)))
    }

    /// The thumbnail's pixels.
    pub fn pixels(&self) -> &RgbImage {
        &self.0
    }

    /// Bytes held, for the reference cache's budget.
    pub fn bytes(&self) -> usize {
        self.0.as_raw().len()
    }
}

/// How literally a generated crop copies its reference crop: 1 for the same pixels, near or
/// below 0 for unrelated ones; `None` when the reference has too little texture to tell.
pub fn score(generated: &Thumbnail, reference: &Thumbnail) -> Option<f64> {
    if ssim::textured(&reference.0) < ssim::MIN_TEXTURED {
        return None;
    }
    ssim::best_alignment(&reference.0, &generated.0)
}

/// The guard's finding for one subject, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CopyPaste {
    /// See [`score`]; null when the reference is untextured or either crop is missing.
    pub score: Option<f64>,
    /// `score >= threshold` (`[rewards.copy_paste]`, or the request's `copy_paste`).
    pub suspected: bool,
}

/// The guard's counters, wired to Prometheus by the service.
#[derive(Clone)]
pub struct GuardMetrics {
    pub suspected: prometheus::IntCounter,
    pub clear: prometheus::IntCounter,
    pub unscored: prometheus::IntCounter,
    pub score: prometheus::Histogram,
}

impl GuardMetrics {
    /// Counts one subject's finding.
    pub fn observe(&self, finding: CopyPaste) {
        match finding.score {
            None => self.unscored.inc(),
            Some(s) => {
                self.score.observe(s);
                match finding.suspected {
                    true => self.suspected.inc(),
                    false => self.clear.inc(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic textured pattern (checks of 4 px with a diagonal ramp).
    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let check = ((x / 4 + y / 4) % 2) as u8 * 150;
            image::Rgb([check + (x as u8 % 50), 80 + (y as u8 % 90), 200 - check])
        })
    }

    #[test]
    fn identical_crops_score_one_and_unrelated_ones_low() {
        let a = Thumbnail::of(&pattern(96, 96)).unwrap();
        let s = score(&a, &a).unwrap();
        assert!((s - 1.0).abs() < 1e-9, "{s}");
        let b = Thumbnail::of(&RgbImage::from_fn(96, 96, |x, y| {
            image::Rgb([(x * y % 256) as u8, (x * 7 % 256) as u8, 40])
        }))
        .unwrap();
        assert!(score(&b, &a).unwrap() < 0.5);
    }

    #[test]
    fn a_mirrored_and_shifted_copy_still_scores_one() {
        let big = pattern(40, 40);
        let r = Thumbnail(image::imageops::crop_imm(&big, 2, 0, 32, 32).to_image());
        let moved = image::imageops::crop_imm(&big, 0, 2, 32, 32).to_image();
        let g = Thumbnail(image::imageops::flip_horizontal(&moved));
        assert!((score(&g, &r).unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_flat_reference_has_no_score() {
        let flat = Thumbnail::of(&RgbImage::from_pixel(50, 50, image::Rgb([200, 10, 10]))).unwrap();
        assert_eq!(score(&flat, &flat), None);
        assert_eq!(Thumbnail::of(&RgbImage::new(0, 4)), None);
        assert_eq!(flat.bytes(), 32 * 32 * 3);
    }
}
