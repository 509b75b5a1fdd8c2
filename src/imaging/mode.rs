//! The mode Pillow opens an image file in, read from the file's header.
//!
//! The PSR scripts never convert what `Image.open` gives them before their transforms, so the
//! mode decides what the models see: which resampling `Image.resize` does, how
//! `convert("RGB")` maps the pixels, and whether the detector's transform accepts the image
//! (only mode `RGB` is detected). The tables below are Pillow 13's: `PngImagePlugin._MODES`
//! (by bit depth and colour type; a `tRNS` chunk never changes the mode), `JpegImagePlugin`'s
//! `SOF` handler (by component count) and `WebPImagePlugin` (`RGBA` when the file has alpha).

use image::{ColorType, ImageFormat};

/// A Pillow image mode, as far as PNG, JPEG and WebP files open in one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PillowMode {
    /// `1`: one-bit grey (PNG grey at bit depth 1).
    Bilevel,
    /// `L`: 8-bit grey (PNG grey at depths 2, 4, 8; grey JPEG).
    L,
    /// `P`: palette indices (every PNG of colour type 3).
    P,
    /// `RGB`, including 16-bit RGB PNGs (Pillow keeps each sample's high byte).
    Rgb,
    /// `RGBA`, including 16-bit RGBA and 16-bit grey+alpha PNGs.
    Rgba,
    /// `LA`: 8-bit grey with alpha.
    La,
    /// `CMYK`: four-component JPEGs.
    Cmyk,
    /// `I;16`: 16-bit grey PNGs.
    I16,
}

impl PillowMode {
    /// Pillow's name of the mode (`"RGBA"`, `"I;16"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PillowMode::Bilevel => "1",
            PillowMode::L => "L",
            PillowMode::P => "P",
            PillowMode::Rgb => "RGB",
            PillowMode::Rgba => "RGBA",
            PillowMode::La => "LA",
            PillowMode::Cmyk => "CMYK",
            PillowMode::I16 => "I;16",
        }
    }

    /// Bytes a decoded pixel takes here: RGB (3), plus alpha (1) when the mode has it,
    /// plus the samples kept in the mode itself for resampling (CMYK 4, `I;16` 2).
    pub fn decoded_bytes_per_pixel(self) -> u64 {
        match self {
            PillowMode::Rgba | PillowMode::La => 4,
            PillowMode::Cmyk => 7,
            PillowMode::I16 => 5,
            _ => 4,
        }
    }

    /// The mode of a file from its bytes, with the decoder's colour type for formats
    /// whose header this does not read (WebP).
    pub fn of_file(bytes: &[u8], format: ImageFormat, color: ColorType) -> Self {
        let from_color = || match color {
            ColorType::L8 | ColorType::L16 => PillowMode::L,
            ColorType::La8 | ColorType::La16 => PillowMode::La,
            ColorType::Rgba8 | ColorType::Rgba16 | ColorType::Rgba32F => PillowMode::Rgba,
            _ => PillowMode::Rgb,
        };
        match format {
            ImageFormat::Png => png_mode(bytes).unwrap_or_else(from_color),
            ImageFormat::Jpeg => match jpeg_components(bytes) {
                Some(1) => PillowMode::L,
                Some(4) => PillowMode::Cmyk,
                Some(_) => PillowMode::Rgb,
                None => from_color(),
            },
            _ => from_color(),
        }
    }
}

/// `PngImagePlugin._MODES[(bit depth, colour type)]` from the IHDR chunk.
fn png_mode(bytes: &[u8]) -> Option<PillowMode> {
    let ihdr = bytes.get(8..26)?;
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") || &ihdr[4..8] != b"IHDR" {
        return None;
    }
    Some(match (ihdr[16], ihdr[17]) {
        (1, 0) => PillowMode::Bilevel,
        (16, 0) => PillowMode::I16,
        (_, 0) => PillowMode::L,
        (_, 2) => PillowMode::Rgb,
        (_, 3) => PillowMode::P,
        (8, 4) => PillowMode::La,
        // 16-bit grey+alpha opens as RGBA (rawmode "LA;16B").
        (_, 4) | (_, 6) => PillowMode::Rgba,
        _ => return None,
    })
}

/// The component count of a JPEG's first start-of-frame segment (Pillow's `layers`).
fn jpeg_components(bytes: &[u8]) -> Option<u8> {
    let mut at = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while *bytes.get(at)? == 0xFF && *bytes.get(at + 1)? == 0xFF {
            at += 1;
        }
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        let len = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        // SOF0..SOF15, without DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            return bytes.get(at + 9).copied();
        }
        if marker == 0xDA || len < 2 {
            return None;
        }
        at += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_header(depth: u8, colour: u8) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x01\0\0\0\x01".to_vec();
        b.extend([depth, colour, 0, 0, 0]);
        b
    }

    #[test]
    fn png_modes_follow_pillows_table() {
        let cases = [
            ((1, 0), "1"),
            ((4, 0), "L"),
            ((16, 0), "I;16"),
            ((16, 2), "RGB"),
            ((2, 3), "P"),
            ((8, 4), "LA"),
            ((16, 4), "RGBA"),
            ((8, 6), "RGBA"),
        ];
        for ((depth, colour), name) in cases {
            let mode = PillowMode::of_file(
                &png_header(depth, colour),
                ImageFormat::Png,
                ColorType::Rgb8,
            );
            assert_eq!(mode.name(), name, "depth {depth} colour type {colour}");
        }
    }

    #[test]
    fn jpeg_modes_follow_the_component_count() {
        // SOI, an APP0 of 4 bytes, then SOF0 with 4 components.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0];
        jpeg.extend([0xFF, 0xFF, 0xC0, 0, 20, 8, 0, 1, 0, 1, 4]);
        let mode = PillowMode::of_file(&jpeg, ImageFormat::Jpeg, ColorType::Rgb8);
        assert_eq!(mode, PillowMode::Cmyk);
        *jpeg.last_mut().unwrap() = 1;
        let mode = PillowMode::of_file(&jpeg, ImageFormat::Jpeg, ColorType::Rgb8);
        assert_eq!(mode, PillowMode::L);
    }
}
