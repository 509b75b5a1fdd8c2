//! Decoded pixels as Pillow reads them: 16-bit samples by their high byte, `I;16` samples
//! kept, CMYK JPEGs as CMYK (`JpegImagePlugin`'s `"CMYK;I"` rawmode), alpha by its high byte.

use image::DynamicImage;

use super::decode::{DecodeLimits, ImageError, NativeSamples};
use super::mode::PillowMode;
use super::pillow::cmyk_to_rgb;

/// A four-component JPEG as Pillow decodes it: libjpeg's CMYK output read as `CMYK;I`
/// (inverted, the Adobe convention Pillow always assumes), and its `convert("RGB")`.
/// `None` when the file is YCCK (Adobe transform 2), which the decoder cannot give as CMYK:
/// the caller then decodes it to RGB as `image` does.
pub(super) fn decode_cmyk_jpeg(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<Option<(image::RgbImage, Vec<u8>)>, ImageError> {
    use zune_core::colorspace::ColorSpace;
    let max = limits.max_side as usize;
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(max)
        .set_max_height(max)
        .jpeg_set_out_colorspace(ColorSpace::CMYK);
    let cursor = zune_core::bytestream::ZCursor::new(bytes);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(cursor, options);
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| ImageError::Corrupt(e.to_string());
    decoder.decode_headers().map_err(corrupt)?;
    if decoder.input_colorspace() != Some(ColorSpace::CMYK) {
        return Ok(None);
    }
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| ImageError::Corrupt("JPEG without dimensions".into()))?;
    let mut cmyk = decoder.decode().map_err(corrupt)?;
    if cmyk.len() != w * h * 4 {
        return Err(ImageError::Corrupt("JPEG decoded to a short buffer".into()));
    }
    for v in &mut cmyk {
        *v = 255 - *v;
    }
    let rgb: Vec<u8> = cmyk.chunks_exact(4).flat_map(cmyk_to_rgb).collect();
    let rgb = image::RgbImage::from_raw(w as u32, h as u32, rgb)
        .ok_or_else(|| ImageError::Corrupt("JPEG size mismatch".into()))?;
    Ok(Some((rgb, cmyk)))
}

/// 8-bit RGB as Pillow's `convert("RGB")` gives it: 16-bit colour samples keep their high
/// byte (Pillow reads 16-bit PNG channels that way), 16-bit grey (Pillow mode "I;16") is
/// clamped to 0..255 and its samples kept, alpha is dropped.
pub(super) fn to_rgb8_like_pillow(
    image: DynamicImage,
    mode: PillowMode,
) -> (image::RgbImage, NativeSamples) {
    let clamp = |v: u16| v.min(255) as u8;
    let grey16 = match (&image, mode) {
        (DynamicImage::ImageLuma16(b), PillowMode::I16) => Some(b.as_raw().clone()),
        // A 16-bit grey PNG with a tRNS chunk decodes with alpha; Pillow ignores it.
        (DynamicImage::ImageLumaA16(b), PillowMode::I16) => {
            Some(b.as_raw().chunks_exact(2).map(|p| p[0]).collect())
        }
        _ => None,
    };
    if let Some(samples) = grey16 {
        let (w, h) = (image.width(), image.height());
        let rgb = samples.iter().flat_map(|&v| [clamp(v); 3]).collect();
        let rgb = image::RgbImage::from_raw(w, h, rgb).unwrap_or_else(|| image.to_rgb8());
        return (rgb, NativeSamples::Grey16(samples));
    }
    (to_rgb8(image), NativeSamples::None)
}

/// 8-bit RGB of the decoder's pixels, 16-bit samples by their high byte.
fn to_rgb8(image: DynamicImage) -> image::RgbImage {
    let high = |v: u16| (v >> 8) as u8;
    let clamp = |v: u16| v.min(255) as u8;
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgb16(b) => image::RgbImage::from_fn(b.width(), b.height(), |x, y| {
            image::Rgb(b.get_pixel(x, y).0.map(high))
        }),
        DynamicImage::ImageRgba16(b) => image::RgbImage::from_fn(b.width(), b.height(), |x, y| {
            let [r, g, bl, _] = b.get_pixel(x, y).0;
            image::Rgb([high(r), high(g), high(bl)])
        }),
        DynamicImage::ImageLuma16(b) => image::RgbImage::from_fn(b.width(), b.height(), |x, y| {
            image::Rgb([clamp(b.get_pixel(x, y).0[0]); 3])
        }),
        DynamicImage::ImageLumaA16(b) => image::RgbImage::from_fn(b.width(), b.height(), |x, y| {
            image::Rgb([high(b.get_pixel(x, y).0[0]); 3])
        }),
        other => other.into_rgb8(),
    }
}

/// The alpha channel as Pillow reads it: 16-bit alpha by its high byte.
pub(super) fn alpha_channel(image: &DynamicImage) -> image::GrayImage {
    let (w, h) = (image.width(), image.height());
    let samples: Option<Vec<u8>> = match image {
        DynamicImage::ImageLumaA8(b) => Some(b.as_raw().chunks_exact(2).map(|p| p[1]).collect()),
        DynamicImage::ImageRgba8(b) => Some(b.as_raw().chunks_exact(4).map(|p| p[3]).collect()),
        DynamicImage::ImageLumaA16(b) => Some(
            b.as_raw()
                .chunks_exact(2)
                .map(|p| (p[1] >> 8) as u8)
                .collect(),
        ),
        DynamicImage::ImageRgba16(b) => Some(
            b.as_raw()
                .chunks_exact(4)
                .map(|p| (p[3] >> 8) as u8)
                .collect(),
        ),
        _ => None,
    };
    match samples.and_then(|s| image::GrayImage::from_raw(w, h, s)) {
        Some(alpha) => alpha,
        None => {
            let rgba = image.to_rgba8();
            image::GrayImage::from_fn(w, h, |x, y| image::Luma([rgba.get_pixel(x, y).0[3]]))
        }
    }
}
