//! Thumbnails for the HTML report: each distinct image file once, as a JPEG data URI with
//! its original size (boxes are drawn over it in original pixel coordinates).

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine;

/// Longest side of a thumbnail, in pixels.
const SIDE: u32 = 240;
/// Decoding limit for report images (the service has its own, stricter, per request).
const MAX_ALLOC: u64 = 1 << 30;

/// A thumbnail: its id in the page's image table and the original size.
#[derive(Debug, Clone)]
pub struct Thumb {
    pub id: String,
    pub width: u32,
    pub height: u32,
}

/// The page's image table, filled as thumbnails are asked for.
#[derive(Default)]
pub struct Thumbs {
    by_path: HashMap<PathBuf, Option<Thumb>>,
    /// (id, data URI), in the order made.
    pub uris: Vec<(String, String)>,
}

impl Thumbs {
    /// The thumbnail of `path`, made once; `None` when the file cannot be read or decoded.
    pub fn get(&mut self, path: &Path) -> Option<Thumb> {
        if let Some(t) = self.by_path.get(path) {
            return t.clone();
        }
        let made = make(path).map(|(uri, width, height)| {
            let id = format!("i{}", self.uris.len());
            self.uris.push((id.clone(), uri));
            Thumb { id, width, height }
        });
        self.by_path.insert(path.to_path_buf(), made.clone());
        made
    }
}

fn make(path: &Path) -> Option<(String, u32, u32)> {
    let mut reader = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().ok()?;
    let (w, h) = (img.width(), img.height());
    let small = img.thumbnail(SIDE, SIDE).to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), 85)
        .encode_image(&small)
        .ok()?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&jpeg);
    Some((format!("data:image/jpeg;base64,{b64}"), w, h))
}
