//! Decoding untrusted images with limits checked before any pixel buffer is allocated.

use std::io::Cursor;

use base64::Engine;
use image::{DynamicImage, ImageDecoder, ImageReader};

use super::mode::PillowMode;
use super::pillow::ModePixels;
use super::samples::{alpha_channel, decode_cmyk_jpeg, to_rgb8_like_pillow};

/// Why an image was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The base64 text is not valid (standard alphabet, padding optional).
    #[error("image is not valid base64: {0}")]
    Base64(String),
    /// The encoded image exceeds the byte limit.
    #[error("encoded image is {bytes} bytes; the limit is {max}")]
    TooManyBytes { bytes: usize, max: usize },
    /// The image is empty.
    #[error("image is empty")]
    Empty,
    /// Not a format the service decodes (PNG, JPEG, WebP).
    #[error("unsupported or unrecognised image format")]
    UnsupportedFormat,
    /// The header announces a size beyond the limits (decompression-bomb guard).
    #[error("image is {width}x{height}; limits are {max_side} pixels per side and {max_pixels} pixels in all")]
    TooLarge {
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },
    /// One side is more than `max` times the other (a 1×8192 strip): such images blow up
    /// under short-side resizes and are never real generated images or references.
    #[error("image is {width}x{height}; the largest accepted aspect ratio is {max}:1")]
    AspectRatio { width: u32, height: u32, max: f64 },
    /// The file ends before its image data does (a JPEG without its end-of-image marker).
    /// Pillow, which the PSR scripts use, refuses such files ("image file is truncated").
    #[error("image file is truncated")]
    Truncated,
    /// The data is corrupt or truncated.
    #[error("cannot decode image: {0}")]
    Corrupt(String),
}

/// Limits applied to every decoded image.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest encoded image, in bytes.
    pub max_bytes: usize,
    /// Largest width or height.
    pub max_side: u32,
    /// Largest width × height.
    pub max_pixels: u64,
    /// Largest long side / short side.
    pub max_aspect_ratio: f64,
}

/// What an image file's header says, read before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    pub width: u32,
    pub height: u32,
    pub format: image::ImageFormat,
    /// The mode Pillow opens the file in.
    pub mode: PillowMode,
}

impl ImageHeader {
    /// Width × height.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Bytes the decoded image will hold (see [`PillowMode::decoded_bytes_per_pixel`]).
    pub fn decoded_bytes(&self) -> u64 {
        self.pixels() * self.mode.decoded_bytes_per_pixel()
    }
}

/// An uploaded image whose header passed the limits, not yet decoded: the bytes a request
/// accounts for (pixels and tensor sizes follow from the header) before it may decode.
pub struct EncodedImage {
    pub bytes: Vec<u8>,
    pub header: ImageHeader,
}

impl EncodedImage {
    /// Decodes base64 text and checks the image header against `limits`.
    pub fn from_base64(b64: &str, limits: &DecodeLimits) -> Result<Self, ImageError> {
        let mut bytes = Vec::new();
        decode_base64_into(b64, limits.max_bytes, &mut bytes)?;
        let header = probe(&bytes, limits)?;
        Ok(Self { bytes, header })
    }

    /// Checks raw image bytes (as gRPC sends them) against `limits`; the bytes are copied
    /// once, without any base64 step.
    pub fn from_bytes(raw: &[u8], limits: &DecodeLimits) -> Result<Self, ImageError> {
        if raw.is_empty() {
            return Err(ImageError::Empty);
        }
        if raw.len() > limits.max_bytes {
            return Err(ImageError::TooManyBytes {
                bytes: raw.len(),
                max: limits.max_bytes,
            });
        }
        let header = probe(raw, limits)?;
        Ok(Self {
            bytes: raw.to_vec(),
            header,
        })
    }

    /// Decodes the pixels.
    pub fn decode(&self, limits: &DecodeLimits) -> Result<DecodedImage, ImageError> {
        decode_bytes(&self.bytes, limits)
    }
}

/// A decoded image converted to 8-bit RGB, with what it was before the conversion.
pub struct DecodedImage {
    /// The pixels with any alpha channel dropped (what Pillow's `convert("RGB")` gives).
    pub rgb: image::RgbImage,
    /// The colour type the decoder produced (e.g. `Rgba8`, `L16`).
    pub source_color: image::ColorType,
    /// The mode Pillow opens the file in (decides how the PSR scripts resample it).
    pub mode: PillowMode,
    /// The alpha channel, when the file has one (a `tRNS` chunk included; kept for
    /// compositing, and for premultiplied resampling when the mode is RGBA or LA).
    pub alpha: Option<image::GrayImage>,
    /// The samples of modes that Pillow resamples in another layout than RGB.
    pub native: NativeSamples,
    /// BLAKE3 of the encoded bytes (128 bits, hex): identifies identical uploads.
    pub content_hash: String,
}

/// Samples kept in the image's own mode, for modes whose resampling is not RGB's.
pub enum NativeSamples {
    /// The RGB pixels (and alpha) are all Pillow resamples.
    None,
    /// CMYK as Pillow decodes a four-component JPEG (inverted, Adobe's convention).
    Cmyk(Vec<u8>),
    /// `I;16` samples.
    Grey16(Vec<u16>),
}

impl DecodedImage {
    /// Whether Pillow would open this file in mode "RGB" (the PSR scripts detect only then).
    /// 16-bit RGB PNGs open as "RGB" too; palette, grey, alpha and CMYK images do not.
    pub fn is_pillow_rgb(&self) -> bool {
        self.mode == PillowMode::Rgb
    }

    /// The pixels as Pillow resamples them in this image's mode.
    pub fn mode_pixels(&self) -> ModePixels<'_> {
        let rgb = self.rgb.as_raw();
        match (&self.native, &self.alpha, self.mode) {
            (NativeSamples::Cmyk(c), ..) => ModePixels::Cmyk(c),
            (NativeSamples::Grey16(g), ..) => ModePixels::Grey16(g),
            (_, Some(a), PillowMode::Rgba | PillowMode::La) => ModePixels::Alpha {
                rgb,
                alpha: a.as_raw(),
            },
            (_, _, PillowMode::P | PillowMode::Bilevel) => ModePixels::Nearest(rgb),
            _ => ModePixels::Rgb(rgb),
        }
    }

    /// The image composited over white using its alpha channel (the RGB pixels when opaque).
    pub fn composited_on_white(&self) -> image::RgbImage {
        let Some(alpha) = &self.alpha else {
            return self.rgb.clone();
        };
        let mut out = self.rgb.clone();
        for (px, a) in out.pixels_mut().zip(alpha.pixels()) {
            let a = u32::from(a.0[0]);
            for c in px.0.iter_mut() {
                // Rounded c*a/255 + 255*(255-a)/255.
                *c = ((u32::from(*c) * a + 255 * (255 - a) + 127) / 255) as u8;
            }
        }
        out
    }
}

/// Decodes a base64 image (a bare string or a `data:` URL) into RGB.
/// `scratch` is a reusable buffer for the decoded bytes.
pub fn decode_image(
    b64: &str,
    limits: &DecodeLimits,
    scratch: &mut Vec<u8>,
) -> Result<DecodedImage, ImageError> {
    decode_base64_into(b64, limits.max_bytes, scratch)?;
    decode_bytes(scratch, limits)
}

/// Decodes base64 text (a bare string or a `data:` URL) into `out`, refusing more than
/// `max_bytes` before decoding when the text is certainly too long.
pub fn decode_base64_into(
    b64: &str,
    max_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), ImageError> {
    let payload = strip_data_url(b64.trim());
    if payload.is_empty() {
        return Err(ImageError::Empty);
    }
    // 3 bytes per 4 characters: refuse before decoding when the text is certainly too large.
    let estimate = payload.len() / 4 * 3;
    if estimate > max_bytes + 3 {
        return Err(ImageError::TooManyBytes {
            bytes: estimate,
            max: max_bytes,
        });
    }
    out.clear();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode_vec(payload.trim_end_matches('='), out)
        .map_err(|e| ImageError::Base64(e.to_string()))?;
    if out.len() > max_bytes {
        return Err(ImageError::TooManyBytes {
            bytes: out.len(),
            max: max_bytes,
        });
    }
    if out.is_empty() {
        return Err(ImageError::Empty);
    }
    Ok(())
}

/// Reads the format and size from the header and checks them against `limits`; no pixel
/// buffer is allocated.
pub fn probe(bytes: &[u8], limits: &DecodeLimits) -> Result<ImageHeader, ImageError> {
    let (_, header) = open_decoder(bytes, limits)?;
    Ok(header)
}

fn open_decoder<'a>(
    bytes: &'a [u8],
    limits: &DecodeLimits,
) -> Result<(Box<dyn ImageDecoder + 'a>, ImageHeader), ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let format = reader.format().ok_or(ImageError::UnsupportedFormat)?;
    let decoder = reader.into_decoder().map_err(map_image_error)?;
    let (width, height) = decoder.dimensions();
    let header = ImageHeader {
        width,
        height,
        format,
        mode: PillowMode::of_file(bytes, format, decoder.color_type()),
    };
    check_header(&header, limits)?;
    Ok((Box::new(decoder), header))
}

/// The decompression-bomb and shape guards, from the header alone.
fn check_header(h: &ImageHeader, limits: &DecodeLimits) -> Result<(), ImageError> {
    let (width, height) = (h.width, h.height);
    if width == 0 || height == 0 {
        return Err(ImageError::Empty);
    }
    if width > limits.max_side || height > limits.max_side || h.pixels() > limits.max_pixels {
        return Err(ImageError::TooLarge {
            width,
            height,
            max_side: limits.max_side,
            max_pixels: limits.max_pixels,
        });
    }
    let ratio = f64::from(width.max(height)) / f64::from(width.min(height));
    if ratio > limits.max_aspect_ratio {
        return Err(ImageError::AspectRatio {
            width,
            height,
            max: limits.max_aspect_ratio,
        });
    }
    Ok(())
}

/// Decodes encoded image bytes into RGB, checking the declared size first.
pub fn decode_bytes(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage, ImageError> {
    let (mut decoder, header) = open_decoder(bytes, limits)?;
    if header.format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(ImageError::Truncated);
    }
    let mut codec_limits = image::Limits::default();
    codec_limits.max_image_width = Some(limits.max_side);
    codec_limits.max_image_height = Some(limits.max_side);
    // Worst case 16-bit RGBA (8 bytes per pixel) plus the codec's own working memory.
    codec_limits.max_alloc = Some(header.pixels().saturating_mul(8).saturating_add(64 << 20));
    decoder.set_limits(codec_limits).map_err(map_image_error)?;
    let source_color = decoder.color_type();
    if header.mode == PillowMode::Cmyk {
        if let Some((rgb, cmyk)) = decode_cmyk_jpeg(bytes, limits)? {
            return Ok(DecodedImage {
                rgb,
                source_color,
                mode: header.mode,
                alpha: None,
                native: NativeSamples::Cmyk(cmyk),
                content_hash: content_hash(bytes),
            });
        }
    }
    let image = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    let alpha = source_color.has_alpha().then(|| alpha_channel(&image));
    let (rgb, native) = to_rgb8_like_pillow(image, header.mode);
    Ok(DecodedImage {
        rgb,
        source_color,
        mode: header.mode,
        alpha,
        native,
        content_hash: content_hash(bytes),
    })
}

/// Whether a JPEG has an end-of-image marker (FF D9) after its last start-of-scan (FF DA).
/// In entropy-coded data an FF byte is always stuffed (FF 00), so FF D9 there is a real
/// marker; a thumbnail's EOI inside APP1 comes before the main scan and does not count.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        _ => false,
    }
}

/// 128-bit BLAKE3 of `bytes` in hex.
pub fn content_hash(bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes);
    hash.as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn strip_data_url(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix("data:") {
        if let Some(idx) = rest.find(";base64,") {
            return &rest[idx + ";base64,".len()..];
        }
    }
    s
}

fn map_image_error(e: image::ImageError) -> ImageError {
    match e {
        image::ImageError::Unsupported(_) => ImageError::UnsupportedFormat,
        image::ImageError::Limits(l) => ImageError::Corrupt(format!("limit exceeded: {l}")),
        other => ImageError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_bytes: 1 << 20,
        max_side: 4096,
        max_pixels: 4096 * 4096,
        max_aspect_ratio: 32.0,
    };

    fn png(w: u32, h: u32, color: [u8; 3]) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb(color));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn decodes_png_and_data_url() {
        let data = png(3, 2, [10, 20, 30]);
        let mut scratch = Vec::new();
        let img = decode_image(&b64(&data), &LIMITS, &mut scratch).unwrap();
        assert_eq!(img.rgb.dimensions(), (3, 2));
        assert_eq!(img.rgb.get_pixel(2, 1).0, [10, 20, 30]);
        let url = format!("data:image/png;base64,{}", b64(&data));
        assert!(decode_image(&url, &LIMITS, &mut scratch).is_ok());
    }

    #[test]
    fn rejects_garbage_truncated_and_bombs() {
        let mut scratch = Vec::new();
        assert!(matches!(
            decode_image("not base64!!", &LIMITS, &mut scratch),
            Err(ImageError::Base64(_))
        ));
        assert!(matches!(
            decode_image(&b64(b"hello world"), &LIMITS, &mut scratch),
            Err(ImageError::UnsupportedFormat)
        ));
        let data = png(64, 64, [1, 2, 3]);
        assert!(matches!(
            decode_image(&b64(&data[..data.len() / 2]), &LIMITS, &mut scratch),
            Err(ImageError::Corrupt(_))
        ));
        // A small file that declares a huge image is refused from its header.
        let big = png(5000, 1, [0, 0, 0]);
        assert!(matches!(
            decode_image(&b64(&big), &LIMITS, &mut scratch),
            Err(ImageError::TooLarge { width: 5000, .. })
        ));
        assert!(matches!(
            decode_image("", &LIMITS, &mut scratch),
            Err(ImageError::Empty)
        ));
    }

    #[test]
    fn a_jpeg_cut_short_is_refused_as_pillow_does() {
        let img =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 7]));
        let mut jpeg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let mut scratch = Vec::new();
        assert!(decode_image(&b64(&jpeg), &LIMITS, &mut scratch).is_ok());
        let cut = &jpeg[..jpeg.len() * 2 / 3];
        assert!(matches!(
            decode_image(&b64(cut), &LIMITS, &mut scratch),
            Err(ImageError::Truncated)
        ));
    }

    #[test]
    fn extreme_aspect_ratios_are_refused_from_the_header() {
        let mut scratch = Vec::new();
        for (w, h) in [(1, 33), (400, 12)] {
            assert!(matches!(
                decode_image(&b64(&png(w, h, [9, 9, 9])), &LIMITS, &mut scratch),
                Err(ImageError::AspectRatio { .. })
            ));
        }
        assert!(decode_image(&b64(&png(1, 32, [9, 9, 9])), &LIMITS, &mut scratch).is_ok());
    }

    #[test]
    fn converts_other_modes_to_rgb() {
        let gray = image::GrayAlphaImage::from_pixel(2, 2, image::LumaA([100, 7]));
        let mut out = Vec::new();
        gray.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        let mut scratch = Vec::new();
        let img = decode_image(&b64(&out), &LIMITS, &mut scratch).unwrap();
        assert_eq!(img.source_color, image::ColorType::La8);
        assert_eq!(img.rgb.get_pixel(0, 0).0, [100, 100, 100]);
        assert!(!img.is_pillow_rgb());
        // 100 over white at alpha 7: (100*7 + 255*248) / 255 = 250.75 -> 251.
        assert_eq!(img.composited_on_white().get_pixel(1, 1).0, [251, 251, 251]);
    }

    #[test]
    fn sixteen_bit_samples_convert_as_pillow_does() {
        let rgb16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(
            1,
            1,
            image::Rgb([0xFFFF, 57 * 256 + 250, 300]),
        );
        let grey16 =
            image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(1, 1, image::Luma([300]));
        let mut scratch = Vec::new();
        let mut enc = |img: DynamicImage| {
            let mut out = Vec::new();
            img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
                .unwrap();
            decode_image(&b64(&out), &LIMITS, &mut scratch).unwrap()
        };
        let c = enc(DynamicImage::ImageRgb16(rgb16));
        assert_eq!(c.rgb.get_pixel(0, 0).0, [255, 57, 1]);
        assert!(c.is_pillow_rgb());
        let g = enc(DynamicImage::ImageLuma16(grey16));
        assert_eq!(g.rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert!(!g.is_pillow_rgb());
    }

    #[test]
    fn identifies_rgb_and_hashes_content() {
        let data = png(2, 2, [1, 2, 3]);
        let mut scratch = Vec::new();
        let img = decode_image(&b64(&data), &LIMITS, &mut scratch).unwrap();
        assert!(img.is_pillow_rgb());
        assert_eq!(img.content_hash.len(), 32);
        assert_eq!(img.content_hash, content_hash(&data));
    }
}
