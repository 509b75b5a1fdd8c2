//! Request examples of the OpenAPI document: small PNGs drawn here, base64-encoded, that
//! `make run`'s default models understand. The fixture detector finds solid red, green, blue,
//! yellow, cyan and magenta shapes named by those colour words (tests/fixtures/README.md), so
//! a subject called "red square" is found in the red square of the generated image.

use std::io::Cursor;
use std::sync::OnceLock;

use base64::Engine;
use image::{Rgb, RgbImage};
use serde_json::{json, Value};

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];

/// The example images, encoded once.
struct Images {
    /// 64 x 64 black, a 20-pixel red square top left and a blue one bottom right.
    scene: String,
    /// 32 x 32 solid red: the reference of the subject "red square".
    red: String,
    /// 32 x 32 solid blue: the reference of the subject "blue square".
    blue: String,
}

fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let mut scene = RgbImage::new(64, 64);
        fill(&mut scene, (8, 8, 28, 28), RED);
        fill(&mut scene, (36, 36, 56, 56), BLUE);
        Images {
            scene: png_base64(&scene),
            red: png_base64(&RgbImage::from_pixel(32, 32, Rgb(RED))),
            blue: png_base64(&RgbImage::from_pixel(32, 32, Rgb(BLUE))),
        }
    })
}

/// Paints the rectangle `[x0, x1) x [y0, y1)`.
fn fill(img: &mut RgbImage, (x0, y0, x1, y1): (u32, u32, u32, u32), colour: [u8; 3]) {
    for y in y0..y1 {
        for x in x0..x1 {
            img.put_pixel(x, y, Rgb(colour));
        }
    }
}

/// Base64 PNG of an image. Encoding a small in-memory RGB image into a `Vec` cannot fail;
/// should it ever, the example carries an empty string (the route then answers 422).
fn png_base64(img: &RgbImage) -> String {
    let mut bytes = Vec::new();
    match img.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png) {
        Ok(()) => base64::engine::general_purpose::STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

/// `POST /v1/reward`: one generated image with two subjects, subject consistency and aesthetic.
pub fn reward() -> Value {
    let img = images();
    json!({
        "items": [{
            "image": img.scene,
            "prompt": "a red square and a blue square",
            "subjects": [
                {"name": "red square", "reference": img.red},
                {"name": "blue square", "reference": img.blue}
            ]
        }],
        "rewards": {"subject_consistency": 0.8, "aesthetic": 0.2}
    })
}

/// `POST /v1/detect`: the two squares of the reward example's image.
pub fn detect() -> Value {
    json!({
        "images": [images().scene],
        "phrases": ["red square", "blue square"]
    })
}

/// `POST /v1/embed`: the reward example's image and the red reference.
pub fn embed() -> Value {
    let img = images();
    json!({ "images": [img.scene, img.red] })
}
