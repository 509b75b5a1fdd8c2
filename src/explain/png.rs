//! Small PNGs in JSON: images fitted into a bounding side, encoded losslessly, sent as
//! base64 strings.

use std::borrow::Cow;

use base64::Engine as _;
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::imageops::FilterType;
use image::{ImageEncoder, RgbImage};
use serde::{Serialize, Serializer};

/// A PNG file, serialised as its base64 text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Png(pub Vec<u8>);

impl Serialize for Png {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

/// Why an image could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode an explanation PNG: {0}")]
pub struct EncodeError(#[from] image::ImageError);

impl Png {
    /// Encodes `img` (fast compression: explanations are for eyes, made per request).
    pub fn encode(img: &RgbImage) -> Result<Self, EncodeError> {
        let mut out = Vec::with_capacity(img.as_raw().len() / 2);
        PngEncoder::new_with_quality(&mut out, CompressionType::Fast, PngFilter::Adaptive)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgb8,
            )?;
        Ok(Self(out))
    }
}

/// `img` scaled down (never up) so that its longer side is at most `max_side`, and the scale
/// applied (1 when it already fits, which returns it unchanged).
pub fn fit(img: &RgbImage, max_side: u32) -> (Cow<'_, RgbImage>, f64) {
    let long = img.width().max(img.height());
    if long <= max_side {
        return (Cow::Borrowed(img), 1.0);
    }
    let scale = f64::from(max_side) / f64::from(long);
    let side = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
    let resized = image::imageops::resize(
        img,
        side(img.width()),
        side(img.height()),
        FilterType::Triangle,
    );
    (Cow::Owned(resized), scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_keeps_small_images_and_shrinks_large_ones_to_the_side() {
        let small = RgbImage::new(300, 200);
        let (same, scale) = fit(&small, 1024);
        assert!(matches!(same, Cow::Borrowed(_)));
        assert_eq!(scale, 1.0);
        let large = RgbImage::new(2000, 500);
        let (fitted, scale) = fit(&large, 1024);
        assert_eq!(fitted.dimensions(), (1024, 256));
        assert!((scale - 0.512).abs() < 1e-12);
    }

    #[test]
    fn encoded_png_decodes_to_the_same_pixels() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        let png = Png::encode(&img).unwrap();
        let back = image::load_from_memory(&png.0).unwrap().to_rgb8();
        assert_eq!(back, img);
        let json = serde_json::to_string(&png).unwrap();
        assert!(json.starts_with("\"iVBORw0KGgo"), "{json}");
    }
}
