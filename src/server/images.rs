//! Images as a request carries them: base64 text borrowed from a JSON body (HTTP) or raw
//! bytes borrowed from a protobuf message (gRPC). Both edges hand the same parsed request to
//! the shared decode; only the first step, reading the image file out of its encoding,
//! differs, so gRPC never base64-encodes or decodes.

use base64::Engine;

use crate::imaging::{DecodeLimits, EncodedImage, ImageError};

/// One image of a request, borrowed from the request body.
#[derive(Debug, Clone, Copy)]
pub enum ImageSource<'a> {
    /// Base64 text (a bare string or a `data:` URL), as the JSON API sends it.
    Base64(&'a str),
    /// The image file itself, as the gRPC API sends it.
    Raw(&'a [u8]),
}

impl<'a> ImageSource<'a> {
    /// Reads the image file and checks its header against `limits` (no pixel is decoded).
    pub fn read(&self, limits: &DecodeLimits) -> Result<EncodedImage, ImageError> {
        match self {
            Self::Base64(text) => EncodedImage::from_base64(text, limits),
            Self::Raw(bytes) => EncodedImage::from_bytes(bytes, limits),
        }
    }

    /// What identifies identical uploads within one request (GRPO groups repeat references).
    pub fn key(&self) -> &'a [u8] {
        match self {
            Self::Base64(text) => text.as_bytes(),
            Self::Raw(bytes) => bytes,
        }
    }

    /// The MIME type of the image, from its first bytes (for the judge's data URL).
    pub fn mime(&self) -> &'static str {
        match self {
            Self::Base64(text) => {
                let head = text.trim_start();
                let head = head.split_once(";base64,").map_or(head, |(_, rest)| rest);
                if head.starts_with("/9j/") {
                    "image/jpeg"
                } else if head.starts_with("UklGR") {
                    "image/webp"
                } else {
                    "image/png"
                }
            }
            Self::Raw(bytes) => {
                if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
                    "image/jpeg"
                } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
                    "image/webp"
                } else {
                    "image/png"
                }
            }
        }
    }

    /// The image as base64 text, for the remote services that take it so (the judge, a
    /// remote aesthetic scorer): the text as sent, or raw bytes encoded (only then).
    pub fn to_base64(self) -> String {
        match self {
            Self::Base64(text) => (*text).to_string(),
            Self::Raw(bytes) => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings_name_the_same_mime_type() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0];
        let webp = *b"RIFF\0\0\0\0WEBPVP8 ";
        let png = *b"\x89PNG\r\n\x1a\n";
        for (raw, mime) in [
            (&jpeg[..], "image/jpeg"),
            (&webp[..], "image/webp"),
            (&png[..], "image/png"),
        ] {
            let text = base64::engine::general_purpose::STANDARD.encode(raw);
            assert_eq!(ImageSource::Raw(raw).mime(), mime);
            assert_eq!(ImageSource::Base64(&text).mime(), mime);
            assert_eq!(ImageSource::Raw(raw).to_base64(), text);
        }
    }
}
