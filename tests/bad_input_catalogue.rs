//! A catalogue of bad input over HTTP against the real server (fixture models on loopback):
//! every route, each input with the status and `error_type` it must get, and the field path
//! or reason the error must name. Every case runs; the test fails once, listing every
//! mismatch, so a failure shows the whole picture.
//!
//! Every error answered by the service is JSON `{"error", "error_type"}`, oversized request
//! heads included (414 / 431 from the service's own limits). The exception is what hyper
//! refuses before any application code runs (a negative `Content-Length`, a URI over its
//! hard 64 KiB, a head over its 1 MiB read buffer, a broken request line): hyper answers
//! those with an empty body, a known limitation. Those cases assert the status only.

mod common;

use std::fmt::Write as _;
use std::io::Cursor;

use common::*;
use psr_reward::config::Config;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JSON: Option<&str> = Some("application/json");
const RED: [u8; 3] = [255, 0, 0];

/// Which of the two servers a case runs against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum On {
    /// Small byte and item limits (body 256 KiB, image 64 KiB, 4 items).
    Main,
    /// Small pixel limits (4096 pixels an image, 6000 a request, 4 MiB in flight).
    Pixels,
}

/// How a case's request is sent.
enum Request {
    /// Through reqwest.
    Http {
        method: Method,
        path: String,
        content_type: Option<&'static str>,
        body: Vec<u8>,
    },
    /// Raw bytes on a TCP connection (for what reqwest will not send); with `half_close`
    /// the write side is shut after them (hyper drops a request whose client half-closed
    /// early, so only the case that needs an early end of the body uses it).
    Tcp { raw: Vec<u8>, half_close: bool },
}

/// One catalogue entry.
struct Case {
    name: String,
    on: On,
    request: Request,
    status: u16,
    /// The error's `error_type`; `None` for a success, or for an answer hyper gives before
    /// the application (status only).
    error_type: Option<&'static str>,
    /// A substring the `error` message must contain (the body, for a success).
    mentions: Option<String>,
}

impl Case {
    fn says(mut self, text: &str) -> Self {
        self.mentions = Some(text.to_string());
        self
    }

    fn half_close(mut self) -> Self {
        if let Request::Tcp { half_close, .. } = &mut self.request {
            *half_close = true;
        }
        self
    }

    fn on_pixels(mut self) -> Self {
        self.on = On::Pixels;
        self
    }
}

fn http(
    name: &str,
    method: Method,
    path: &str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    error_type: Option<&'static str>,
) -> Case {
    Case {
        name: name.to_string(),
        on: On::Main,
        request: Request::Http {
            method,
            path: path.to_string(),
            content_type,
            body,
        },
        status,
        error_type,
        mentions: None,
    }
}

/// A JSON POST that must fail with `status` and `error_type`.
fn bad(name: &str, path: &str, body: Value, status: u16, error_type: &'static str) -> Case {
    let bytes = body.to_string().into_bytes();
    http(
        name,
        Method::POST,
        path,
        JSON,
        bytes,
        status,
        Some(error_type),
    )
}

/// A raw-bytes POST that must fail with `status` and `error_type`.
fn bad_raw(
    name: &str,
    path: &str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    error_type: &'static str,
) -> Case {
    http(
        name,
        Method::POST,
        path,
        content_type,
        body,
        status,
        Some(error_type),
    )
}

/// A JSON POST that must succeed.
fn good(name: &str, path: &str, body: Value) -> Case {
    let bytes = body.to_string().into_bytes();
    http(name, Method::POST, path, JSON, bytes, 200, None)
}

/// A body-less request with `method`.
fn call(
    name: &str,
    method: Method,
    path: &str,
    status: u16,
    error_type: Option<&'static str>,
) -> Case {
    http(name, method, path, None, Vec::new(), status, error_type)
}

fn tcp(name: &str, raw: Vec<u8>, status: u16, error_type: Option<&'static str>) -> Case {
    Case {
        name: name.to_string(),
        on: On::Main,
        request: Request::Tcp {
            raw,
            half_close: false,
        },
        status,
        error_type,
        mentions: None,
    }
}

/// `base` with `edit` applied.
fn with(mut base: Value, edit: impl FnOnce(&mut Value)) -> Value {
    edit(&mut base);
    base
}

/// `{"images": [` + `inner` + `]}` as raw bytes (for bytes serde_json cannot build).
fn images_raw(inner: &[u8]) -> Vec<u8> {
    [br#"{"images": ["#.as_slice(), inner, b"]}"].concat()
}

/// CRC-32 (IEEE) of PNG chunk type and data.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    out.extend_from_slice(&typed);
    out.extend_from_slice(&crc32(&typed).to_be_bytes());
}

/// A valid-looking PNG whose header claims `width`×`height` (a decompression bomb's shape):
/// IHDR, one IDAT holding an empty zlib stream, IEND. Well under a kilobyte.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A 1×1 GIF89a (a format the service does not decode).
fn gif_bytes() -> Vec<u8> {
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec()
}

/// A 1×1 24-bit BMP.
fn bmp_bytes() -> Vec<u8> {
    let mut out = b"BM".to_vec();
    out.extend_from_slice(&58u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&1i32.to_le_bytes());
    out.extend_from_slice(&1i32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]);
    out.extend_from_slice(&[0, 0, 255, 0]);
    out
}

/// A 128×128 textured JPEG (its entropy-coded data is most of the file).
fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(128, 128, |x, y| {
        image::Rgb([(x * 7 + y) as u8, ((y * 13) ^ x) as u8, (x * y) as u8])
    });
    let mut jpeg = Vec::new();
    img.write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .unwrap();
    jpeg
}

/// The JPEG cut after half its bytes, inside its scan (no end-of-image marker): Pillow, and
/// so the service, refuse it as truncated.
fn half_jpeg() -> Vec<u8> {
    let mut jpeg = jpeg();
    jpeg.truncate(jpeg.len() / 2);
    jpeg
}

/// A PNG of noise (incompressible): `side`² × 3 bytes, a little more encoded.
fn noise_png(side: u32) -> Vec<u8> {
    let mut state = 0x2545_F491u32;
    let img = image::RgbImage::from_fn(side, side, |_, _| {
        let mut px = [0u8; 3];
        for c in &mut px {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *c = state as u8;
        }
        image::Rgb(px)
    });
    png(&img)
}

/// The limits of the main server: small byte and item limits so that the over-limit cases
/// stay small.
fn main_config() -> Config {
    let mut config = Config::default();
    config.limits.max_body_bytes = 256 * 1024;
    config.limits.max_image_bytes = 64 * 1024;
    config.limits.max_items_per_request = 4;
    config
}

/// The limits of the pixel server: a 64×64 image fits, two do not; one detector tensor
/// (800×800×3 f32 = 7.7 MB) exceeds the in-flight budget.
fn pixels_config() -> Config {
    let mut config = Config::default();
    config.limits.max_image_pixels = 4096;
    config.limits.max_request_pixels = 6000;
    config.limits.max_inflight_bytes = 4 << 20;
    config
}

/// The `/v1/embed` cases.
fn embed_cases() -> Vec<Case> {
    let p = "/v1/embed";
    let img = solid_b64(16, 16, RED);
    let base = json!({"images": [img]});
    let one = |name: &str, image: String, status, kind| {
        bad(name, p, json!({"images": [image]}), status, kind)
    };
    let nested = "[".repeat(10_000) + &"]".repeat(10_000);
    let nested_field = format!(r#"{{"images": {}}}"#, nested);
    vec![
        good("embed: valid request", p, base.clone()).says("embeddings"),
        http(
            "embed: content type with charset",
            Method::POST,
            p,
            Some("application/json; charset=utf-8"),
            base.to_string().into_bytes(),
            200,
            None,
        ),
        bad_raw(
            "embed: broken JSON",
            p,
            JSON,
            b"{\"images\": [".to_vec(),
            400,
            "invalid_json",
        ),
        bad_raw(
            "embed: empty body",
            p,
            JSON,
            Vec::new(),
            400,
            "invalid_json",
        ),
        bad_raw(
            "embed: trailing bytes after the object",
            p,
            JSON,
            format!("{base} x").into_bytes(),
            400,
            "invalid_json",
        ),
        bad_raw(
            "embed: UTF-8 byte-order mark",
            p,
            JSON,
            [b"\xef\xbb\xbf".as_slice(), base.to_string().as_bytes()].concat(),
            400,
            "invalid_json",
        ),
        bad_raw(
            "embed: invalid UTF-8 body",
            p,
            JSON,
            vec![0xff, 0xfe, b'{'],
            400,
            "invalid_json",
        ),
        bad_raw(
            "embed: invalid UTF-8 inside a string",
            p,
            JSON,
            images_raw(b"\"\xc3\x28\xff\""),
            400,
            "invalid_json",
        ),
        bad("embed: null body", p, json!(null), 422, "invalid_request"),
        bad(
            "embed: a string body",
            p,
            json!("images"),
            422,
            "invalid_request",
        ),
        bad(
            "embed: missing images",
            p,
            json!({}),
            422,
            "invalid_request",
        )
        .says("images"),
        bad(
            "embed: images is a string",
            p,
            json!({"images": img}),
            422,
            "invalid_request",
        )
        .says("images"),
        bad(
            "embed: an image is a number",
            p,
            json!({"images": [1]}),
            422,
            "invalid_request",
        )
        .says("images[0]"),
        bad(
            "embed: an image is null",
            p,
            json!({"images": [img, null]}),
            422,
            "invalid_request",
        )
        .says("images[1]"),
        bad(
            "embed: empty image list",
            p,
            json!({"images": []}),
            422,
            "invalid_request",
        )
        .says("images"),
        bad(
            "embed: too many images",
            p,
            json!({"images": vec![img.clone(); 5]}),
            422,
            "invalid_request",
        )
        .says("images"),
        bad(
            "embed: unknown field",
            p,
            with(base.clone(), |v| v["colour"] = json!(1)),
            422,
            "invalid_request",
        )
        .says("colour"),
        bad_raw(
            "embed: duplicate field",
            p,
            JSON,
            format!(r#"{{"images": ["{img}"], "images": ["{img}"]}}"#).into_bytes(),
            422,
            "invalid_request",
        )
        .says("duplicate"),
        bad_raw(
            "embed: deep nesting",
            p,
            JSON,
            nested.into_bytes(),
            422,
            "invalid_request",
        ),
        bad_raw(
            "embed: deep nesting in a field",
            p,
            JSON,
            nested_field.into_bytes(),
            422,
            "invalid_request",
        )
        .says("images"),
        bad(
            "embed: timeout_ms 0",
            p,
            with(base.clone(), |v| v["timeout_ms"] = json!(0)),
            422,
            "invalid_request",
        )
        .says("timeout_ms"),
        bad(
            "embed: timeout_ms over the maximum",
            p,
            with(base.clone(), |v| v["timeout_ms"] = json!(600_001)),
            422,
            "invalid_request",
        )
        .says("timeout_ms"),
        bad(
            "embed: negative timeout_ms",
            p,
            with(base.clone(), |v| v["timeout_ms"] = json!(-5)),
            422,
            "invalid_request",
        )
        .says("timeout_ms"),
        bad(
            "embed: timeout_ms as a string",
            p,
            with(base.clone(), |v| v["timeout_ms"] = json!("100")),
            422,
            "invalid_request",
        )
        .says("timeout_ms"),
        bad(
            "embed: priority out of range",
            p,
            with(base.clone(), |v| v["priority"] = json!(3)),
            422,
            "invalid_request",
        )
        .says("priority"),
        bad(
            "embed: priority over u8",
            p,
            with(base.clone(), |v| v["priority"] = json!(300)),
            422,
            "invalid_request",
        )
        .says("priority"),
        bad(
            "embed: negative priority",
            p,
            with(base.clone(), |v| v["priority"] = json!(-1)),
            422,
            "invalid_request",
        )
        .says("priority"),
        one("embed: invalid base64", "%%%".into(), 422, "invalid_image").says("images[0]"),
        one("embed: empty image", String::new(), 422, "invalid_image").says("images[0]"),
        one(
            "embed: empty data URL",
            "data:image/png;base64,".into(),
            422,
            "invalid_image",
        )
        .says("empty"),
        one(
            "embed: text, not an image",
            b64(b"plain text, not pixels"),
            422,
            "invalid_image",
        )
        .says("unsupported"),
        one("embed: GIF", b64(&gif_bytes()), 422, "invalid_image").says("unsupported"),
        one("embed: BMP", b64(&bmp_bytes()), 422, "invalid_image").says("unsupported"),
        one(
            "embed: TIFF magic",
            b64(b"II*\x00\x08\x00\x00\x00garbage"),
            422,
            "invalid_image",
        ),
        one(
            "embed: truncated PNG",
            {
                let p = png(&scene(48, 48, &[(0, 0, 24, 24, RED)]));
                b64(&p[..p.len() / 2])
            },
            422,
            "invalid_image",
        )
        .says("images[0]"),
        one(
            "embed: PNG signature only",
            b64(b"\x89PNG\r\n\x1a\n"),
            422,
            "invalid_image",
        ),
        one(
            "embed: JPEG cut in half",
            b64(&half_jpeg()),
            422,
            "invalid_image",
        )
        .says("truncated"),
        good(
            "embed: the same JPEG whole",
            p,
            json!({"images": [b64(&jpeg())]}),
        ),
        one(
            "embed: JPEG cut inside its headers",
            b64(&jpeg()[..120]),
            422,
            "invalid_image",
        ),
        one(
            "embed: image over the byte limit",
            b64(&vec![0u8; 80 * 1024]),
            413,
            "image_too_large",
        )
        .says("limit"),
        one(
            "embed: noise PNG over the byte limit",
            b64(&noise_png(160)),
            413,
            "image_too_large",
        ),
        one(
            "embed: PNG header claiming 50000x50000",
            b64(&png_claiming(50_000, 50_000)),
            413,
            "image_too_large",
        )
        .says("50000x50000"),
        one(
            "embed: 1x8192 strip",
            solid_b64(1, 8192, RED),
            422,
            "invalid_image",
        )
        .says("aspect ratio"),
        one(
            "embed: 8192x1 strip",
            solid_b64(8192, 1, RED),
            422,
            "invalid_image",
        )
        .says("aspect ratio"),
        one(
            "embed: zero-size PNG header",
            b64(&png_claiming(0, 16)),
            422,
            "invalid_image",
        ),
        bad(
            "embed: the second image is bad",
            p,
            json!({"images": [img, "%%%"]}),
            422,
            "invalid_image",
        )
        .says("images[1]"),
        bad_raw(
            "embed: no content type",
            p,
            None,
            base.to_string().into_bytes(),
            415,
            "unsupported_media_type",
        ),
        bad_raw(
            "embed: text/plain",
            p,
            Some("text/plain"),
            base.to_string().into_bytes(),
            415,
            "unsupported_media_type",
        ),
        bad_raw(
            "embed: form encoding",
            p,
            Some("application/x-www-form-urlencoded"),
            b"images=x".to_vec(),
            415,
            "unsupported_media_type",
        ),
        bad_raw(
            "embed: multipart",
            p,
            Some("multipart/form-data; boundary=x"),
            b"--x--".to_vec(),
            415,
            "unsupported_media_type",
        ),
        bad_raw(
            "embed: body over the limit",
            p,
            JSON,
            vec![b' '; 300 * 1024],
            413,
            "payload_too_large",
        ),
        bad(
            "embed: a JSON image string over the body limit",
            p,
            json!({"images": ["A".repeat(300 * 1024)]}),
            413,
            "payload_too_large",
        ),
        call(
            "embed: GET",
            Method::GET,
            p,
            405,
            Some("method_not_allowed"),
        ),
        call(
            "embed: PUT",
            Method::PUT,
            p,
            405,
            Some("method_not_allowed"),
        ),
        call(
            "embed: DELETE",
            Method::DELETE,
            p,
            405,
            Some("method_not_allowed"),
        ),
    ]
}

/// The `/v1/detect` cases.
fn detect_cases() -> Vec<Case> {
    let p = "/v1/detect";
    let img = solid_b64(16, 16, RED);
    let base = json!({"images": [img], "phrases": ["red"]});
    let set = |field: &'static str, value: Value| with(base.clone(), move |v| v[field] = value);
    vec![
        good("detect: valid request", p, base.clone()).says("detections"),
        bad_raw(
            "detect: broken JSON",
            p,
            JSON,
            b"{\"phrases\": [\"red\"".to_vec(),
            400,
            "invalid_json",
        ),
        bad(
            "detect: missing phrases",
            p,
            json!({"images": [img]}),
            422,
            "invalid_request",
        )
        .says("phrases"),
        bad(
            "detect: missing images",
            p,
            json!({"phrases": ["red"]}),
            422,
            "invalid_request",
        )
        .says("images"),
        bad(
            "detect: phrases is a string",
            p,
            set("phrases", json!("red")),
            422,
            "invalid_request",
        )
        .says("phrases"),
        bad(
            "detect: a phrase is a number",
            p,
            set("phrases", json!(["red", 7])),
            422,
            "invalid_request",
        )
        .says("phrases[1]"),
        bad(
            "detect: empty phrase list",
            p,
            set("phrases", json!([])),
            422,
            "invalid_request",
        )
        .says("phrases"),
        bad(
            "detect: too many phrases",
            p,
            set("phrases", json!(vec!["red"; 9])),
            422,
            "invalid_request",
        )
        .says("phrases"),
        bad(
            "detect: empty phrase",
            p,
            set("phrases", json!([""])),
            422,
            "invalid_request",
        )
        .says("phrases[0]"),
        bad(
            "detect: blank phrase",
            p,
            set("phrases", json!(["red", "   "])),
            422,
            "invalid_request",
        )
        .says("phrases[1]"),
        bad(
            "detect: phrase over the text length",
            p,
            set("phrases", json!(["red ".repeat(300)])),
            422,
            "invalid_request",
        )
        .says("phrases[0]"),
        bad(
            "detect: empty image list",
            p,
            set("images", json!([])),
            422,
            "invalid_request",
        )
        .says("images"),
        bad(
            "detect: too many images",
            p,
            set("images", json!(vec![img.clone(); 5])),
            422,
            "invalid_request",
        )
        .says("images"),
        bad(
            "detect: unknown field",
            p,
            set("threshold", json!(0.5)),
            422,
            "invalid_request",
        )
        .says("threshold"),
        bad(
            "detect: box_threshold 1",
            p,
            set("box_threshold", json!(1.0)),
            422,
            "invalid_request",
        )
        .says("box_threshold"),
        bad(
            "detect: negative box_threshold",
            p,
            set("box_threshold", json!(-0.1)),
            422,
            "invalid_request",
        )
        .says("box_threshold"),
        bad(
            "detect: box_threshold \"NaN\"",
            p,
            set("box_threshold", json!("NaN")),
            422,
            "invalid_request",
        )
        .says("box_threshold"),
        bad(
            "detect: box_threshold as a list",
            p,
            set("box_threshold", json!([0.3])),
            422,
            "invalid_request",
        )
        .says("box_threshold"),
        bad(
            "detect: timeout_ms 0",
            p,
            set("timeout_ms", json!(0)),
            422,
            "invalid_request",
        )
        .says("timeout_ms"),
        bad(
            "detect: timeout_ms over the maximum",
            p,
            set("timeout_ms", json!(10_000_000)),
            422,
            "invalid_request",
        )
        .says("timeout_ms"),
        bad(
            "detect: priority out of range",
            p,
            set("priority", json!(9)),
            422,
            "invalid_request",
        )
        .says("priority"),
        bad(
            "detect: invalid base64",
            p,
            set("images", json!(["!!!"])),
            422,
            "invalid_image",
        )
        .says("images[0]"),
        bad(
            "detect: GIF",
            p,
            set("images", json!([b64(&gif_bytes())])),
            422,
            "invalid_image",
        )
        .says("images[0]"),
        bad(
            "detect: JPEG cut in half",
            p,
            set("images", json!([b64(&half_jpeg())])),
            422,
            "invalid_image",
        )
        .says("truncated"),
        bad(
            "detect: PNG header claiming 50000x50000",
            p,
            set("images", json!([b64(&png_claiming(50_000, 50_000))])),
            413,
            "image_too_large",
        ),
        bad(
            "detect: 1x8192 strip",
            p,
            set("images", json!([solid_b64(1, 8192, RED)])),
            422,
            "invalid_image",
        )
        .says("aspect ratio"),
        bad_raw(
            "detect: text/plain",
            p,
            Some("text/plain"),
            base.to_string().into_bytes(),
            415,
            "unsupported_media_type",
        ),
        bad_raw(
            "detect: body over the limit",
            p,
            JSON,
            vec![b'['; 300 * 1024],
            413,
            "payload_too_large",
        ),
        call(
            "detect: GET",
            Method::GET,
            p,
            405,
            Some("method_not_allowed"),
        ),
        call(
            "detect: PATCH",
            Method::PATCH,
            p,
            405,
            Some("method_not_allowed"),
        ),
    ]
}

/// The `/v1/reward` cases.
fn reward_cases() -> Vec<Case> {
    let p = "/v1/reward";
    let img = solid_b64(16, 16, RED);
    let item = json!({
        "image": img,
        "prompt": "a red square",
        "subjects": [{"name": "red square", "reference": img}],
    });
    let base = json!({"items": [item], "rewards": {"subject_consistency": 1.0}});
    let set = |field: &'static str, value: Value| with(base.clone(), move |v| v[field] = value);
    let item_set = |field: &'static str, value: Value| {
        with(base.clone(), move |v| v["items"][0][field] = value)
    };
    let subject_set = |field: &'static str, value: Value| {
        with(base.clone(), move |v| {
            v["items"][0]["subjects"][0][field] = value
        })
    };
    let subject = json!({"name": "red", "reference": img});
    let weights = |w: Value| set("rewards", w);
    vec![
        good("reward: valid request", p, base.clone()).says("subject_consistency"),
        bad_raw(
            "reward: broken JSON",
            p,
            JSON,
            b"{\"items\": [{\"image\": }]}".to_vec(),
            400,
            "invalid_json",
        ),
        bad_raw(
            "reward: bare NaN weight (not JSON)",
            p,
            JSON,
            format!(r#"{{"items": [{item}], "rewards": {{"subject_consistency": NaN}}}}"#)
                .into_bytes(),
            400,
            "invalid_json",
        ),
        // serde_json reads a number beyond f64 as a syntax error, so no field path.
        bad_raw(
            "reward: weight 1e400 (beyond f64)",
            p,
            JSON,
            format!(r#"{{"items": [{item}], "rewards": {{"subject_consistency": 1e400}}}}"#)
                .into_bytes(),
            400,
            "invalid_json",
        ),
        bad(
            "reward: missing items",
            p,
            json!({"rewards": {"subject_consistency": 1.0}}),
            422,
            "invalid_request",
        )
        .says("items"),
        bad(
            "reward: items is an object",
            p,
            set("items", item.clone()),
            422,
            "invalid_request",
        )
        .says("items"),
        bad(
            "reward: empty item list",
            p,
            set("items", json!([])),
            422,
            "invalid_request",
        )
        .says("items"),
        bad(
            "reward: too many items",
            p,
            set("items", json!(vec![item.clone(); 5])),
            422,
            "invalid_request",
        )
        .says("items"),
        bad(
            "reward: unknown top-level field",
            p,
            set("weights", json!({})),
            422,
            "invalid_request",
        )
        .says("weights"),
        bad(
            "reward: item missing its image",
            p,
            with(base.clone(), |v| {
                v["items"][0].as_object_mut().unwrap().remove("image");
            }),
            422,
            "invalid_request",
        )
        .says("image"),
        bad(
            "reward: item missing its subjects",
            p,
            with(base.clone(), |v| {
                v["items"][0].as_object_mut().unwrap().remove("subjects");
            }),
            422,
            "invalid_request",
        )
        .says("subjects"),
        bad(
            "reward: item image is a number",
            p,
            item_set("image", json!(5)),
            422,
            "invalid_request",
        )
        .says("items[0].image"),
        bad(
            "reward: prompt is a list",
            p,
            item_set("prompt", json!(["a", "b"])),
            422,
            "invalid_request",
        )
        .says("items[0].prompt"),
        bad(
            "reward: prompt over the length limit",
            p,
            item_set("prompt", json!("x".repeat(2001))),
            422,
            "invalid_request",
        )
        .says("items[0].prompt"),
        bad(
            "reward: unknown item field",
            p,
            item_set("caption", json!("x")),
            422,
            "invalid_request",
        )
        .says("caption"),
        bad(
            "reward: empty subject list",
            p,
            item_set("subjects", json!([])),
            422,
            "invalid_request",
        )
        .says("items[0].subjects"),
        bad(
            "reward: too many subjects",
            p,
            item_set("subjects", json!(vec![subject.clone(); 5])),
            422,
            "invalid_request",
        )
        .says("items[0].subjects"),
        bad(
            "reward: empty subject name",
            p,
            subject_set("name", json!("")),
            422,
            "invalid_request",
        )
        .says("items[0].subjects[0].name"),
        bad(
            "reward: blank subject name",
            p,
            subject_set("name", json!("  \t ")),
            422,
            "invalid_request",
        )
        .says("items[0].subjects[0].name"),
        bad(
            "reward: subject name is a number",
            p,
            subject_set("name", json!(3)),
            422,
            "invalid_request",
        )
        .says("items[0].subjects[0].name"),
        bad(
            "reward: subject missing its reference",
            p,
            item_set("subjects", json!([{"name": "red"}])),
            422,
            "invalid_request",
        )
        .says("reference"),
        bad(
            "reward: unknown subject field",
            p,
            subject_set("weight", json!(1)),
            422,
            "invalid_request",
        )
        .says("weight"),
        bad(
            "reward: reference is a number",
            p,
            subject_set("reference", json!(42)),
            422,
            "invalid_request",
        )
        .says("items[0].subjects[0].reference"),
        bad(
            "reward: reference hash is a number",
            p,
            subject_set("reference", json!({"ref": 42})),
            422,
            "invalid_request",
        )
        .says("items[0].subjects[0].reference"),
        bad(
            "reward: unknown reference hash",
            p,
            subject_set(
                "reference",
                json!({"ref": "00112233445566778899aabbccddeeff"}),
            ),
            422,
            "unknown_reference",
        ),
        bad(
            "reward: unknown task",
            p,
            item_set("task", json!("cooking")),
            422,
            "invalid_request",
        )
        .says("items[0].task"),
        bad(
            "reward: task is a number",
            p,
            item_set("task", json!(1)),
            422,
            "invalid_request",
        )
        .says("items[0].task"),
        bad(
            "reward: rewards is a list",
            p,
            weights(json!(["subject_consistency"])),
            422,
            "invalid_request",
        )
        .says("rewards"),
        bad(
            "reward: empty rewards",
            p,
            weights(json!({})),
            422,
            "invalid_request",
        )
        .says("rewards"),
        bad(
            "reward: negative weight",
            p,
            weights(json!({"subject_consistency": -1.0})),
            422,
            "invalid_request",
        )
        .says("rewards.subject_consistency"),
        bad(
            "reward: huge weight",
            p,
            weights(json!({"subject_consistency": 1e308})),
            422,
            "invalid_request",
        )
        .says("rewards.subject_consistency"),
        bad(
            "reward: weight \"NaN\" as a string",
            p,
            weights(json!({"subject_consistency": "NaN"})),
            422,
            "invalid_request",
        )
        .says("rewards.subject_consistency"),
        bad(
            "reward: weight \"inf\" as a string",
            p,
            weights(json!({"subject_consistency": "inf"})),
            422,
            "invalid_request",
        )
        .says("rewards.subject_consistency"),
        bad(
            "reward: all-zero weights",
            p,
            weights(json!({"subject_consistency": 0.0, "aesthetic": 0.0})),
            422,
            "invalid_request",
        )
        .says("zero"),
        bad(
            "reward: unknown component",
            p,
            weights(json!({"beauty": 1.0})),
            422,
            "invalid_request",
        )
        .says("rewards.beauty"),
        bad(
            "reward: unserved component (no judge)",
            p,
            weights(json!({"semantic_alignment": 1.0})),
            422,
            "invalid_request",
        )
        .says("rewards.semantic_alignment"),
        bad(
            "reward: position with one subject",
            p,
            weights(json!({"position": 1.0})),
            422,
            "invalid_request",
        )
        .says("rewards.position"),
        bad(
            "reward: mode is a number",
            p,
            set("mode", json!(1)),
            422,
            "invalid_request",
        )
        .says("mode"),
        bad(
            "reward: unknown mode",
            p,
            set("mode", json!("fast")),
            422,
            "invalid_request",
        )
        .says("mode"),
        bad(
            "reward: mode as a map",
            p,
            set("mode", json!({"psr": null})),
            422,
            "invalid_request",
        )
        .says("mode"),
        bad(
            "reward: options.alpha is a number",
            p,
            set("options", json!({"alpha": 0})),
            422,
            "invalid_request",
        )
        .says("options.alpha"),
        bad(
            "reward: options.matching is a bool",
            p,
            set("options", json!({"matching": false})),
            422,
            "invalid_request",
        )
        .says("options.matching"),
        bad(
            "reward: options.detection is a list",
            p,
            set("options", json!({"detection": ["joint"]})),
            422,
            "invalid_request",
        )
        .says("options.detection"),
        bad(
            "reward: unknown options.detection",
            p,
            set("options", json!({"detection": "all"})),
            422,
            "invalid_request",
        )
        .says("options.detection"),
        bad(
            "reward: options.clamp_boxes is a string",
            p,
            set("options", json!({"clamp_boxes": "yes"})),
            422,
            "invalid_request",
        )
        .says("options.clamp_boxes"),
        bad(
            "reward: unknown option",
            p,
            set("options", json!({"crop": true})),
            422,
            "invalid_request",
        )
        .says("crop"),
        bad(
            "reward: timeout_ms 0",
            p,
            set("timeout_ms", json!(0)),
            422,
            "invalid_request",
        )
        .says("timeout_ms"),
        bad(
            "reward: timeout_ms over the maximum",
            p,
            set("timeout_ms", json!(600_001)),
            422,
            "invalid_request",
        )
        .says("timeout_ms"),
        bad(
            "reward: priority out of range",
            p,
            set("priority", json!(3)),
            422,
            "invalid_request",
        )
        .says("priority"),
        bad(
            "reward: invalid base64 image",
            p,
            item_set("image", json!("not*base64")),
            422,
            "invalid_image",
        )
        .says("items[0].image"),
        bad(
            "reward: invalid base64 reference",
            p,
            subject_set("reference", json!("not*base64")),
            422,
            "invalid_image",
        )
        .says("items[0].subjects[0].reference"),
        bad(
            "reward: empty image",
            p,
            item_set("image", json!("")),
            422,
            "invalid_image",
        )
        .says("items[0].image"),
        bad(
            "reward: GIF reference",
            p,
            subject_set("reference", json!(b64(&gif_bytes()))),
            422,
            "invalid_image",
        )
        .says("items[0].subjects[0].reference"),
        bad(
            "reward: BMP image",
            p,
            item_set("image", json!(b64(&bmp_bytes()))),
            422,
            "invalid_image",
        )
        .says("items[0].image"),
        bad(
            "reward: JPEG cut in half",
            p,
            item_set("image", json!(b64(&half_jpeg()))),
            422,
            "invalid_image",
        )
        .says("truncated"),
        bad(
            "reward: 1x8192 reference",
            p,
            subject_set("reference", json!(solid_b64(1, 8192, RED))),
            422,
            "invalid_image",
        )
        .says("aspect ratio"),
        bad(
            "reward: PNG header claiming 50000x50000",
            p,
            item_set("image", json!(b64(&png_claiming(50_000, 50_000)))),
            413,
            "image_too_large",
        )
        .says("items[0].image"),
        bad(
            "reward: image over the byte limit",
            p,
            item_set("image", json!(b64(&vec![7u8; 80 * 1024]))),
            413,
            "image_too_large",
        )
        .says("items[0].image"),
        bad_raw(
            "reward: no content type",
            p,
            None,
            base.to_string().into_bytes(),
            415,
            "unsupported_media_type",
        ),
        bad_raw(
            "reward: body over the limit",
            p,
            JSON,
            vec![b'{'; 300 * 1024],
            413,
            "payload_too_large",
        ),
        call(
            "reward: GET",
            Method::GET,
            p,
            405,
            Some("method_not_allowed"),
        ),
    ]
}

/// Request limits over pixels and the in-flight budget, on the pixel server.
fn pixel_cases() -> Vec<Case> {
    let a = solid_b64(64, 64, RED);
    let b = solid_b64(64, 64, [0, 0, 255]);
    let item = json!({"image": a, "subjects": [{"name": "red", "reference": b}]});
    vec![
        good(
            "pixels: one 64x64 image fits",
            "/v1/embed",
            json!({"images": [a]}),
        )
        .on_pixels(),
        bad(
            "pixels: 65x65 is over the image limit",
            "/v1/embed",
            json!({"images": [solid_b64(65, 65, RED)]}),
            413,
            "image_too_large",
        )
        .on_pixels(),
        bad(
            "pixels: two images on /v1/embed",
            "/v1/embed",
            json!({"images": [a, b]}),
            413,
            "too_many_pixels",
        )
        .on_pixels()
        .says("max_request_pixels"),
        bad(
            "pixels: two images on /v1/detect",
            "/v1/detect",
            json!({"images": [a, b], "phrases": ["red"]}),
            413,
            "too_many_pixels",
        )
        .on_pixels(),
        bad(
            "pixels: image and reference on /v1/reward",
            "/v1/reward",
            json!({"items": [item], "rewards": {"subject_consistency": 1.0}}),
            413,
            "too_many_pixels",
        )
        .on_pixels(),
        bad(
            "pixels: a detector tensor over the in-flight budget",
            "/v1/detect",
            json!({"images": [solid_b64(32, 32, RED)], "phrases": ["red"]}),
            422,
            "request_too_large",
        )
        .on_pixels()
        .says("max_inflight_bytes"),
    ]
}

/// Operational routes, unknown routes and wrong methods.
fn route_cases() -> Vec<Case> {
    let json_post = |name: &str, path: &str, status, kind| {
        bad_raw(name, path, JSON, b"{}".to_vec(), status, kind)
    };
    vec![
        call("GET /health", Method::GET, "/health", 200, None).says("\"ok\""),
        call("GET /ready", Method::GET, "/ready", 200, None).says("\"ready\""),
        call("GET /info", Method::GET, "/info", 200, None).says("max_request_pixels"),
        call("GET /metrics", Method::GET, "/metrics", 200, None).says("psr_reward_requests_total"),
        call("GET /openapi.json", Method::GET, "/openapi.json", 200, None).says("/v1/reward"),
        call("HEAD /health", Method::HEAD, "/health", 200, None),
        json_post("POST /health", "/health", 405, "method_not_allowed"),
        json_post("POST /ready", "/ready", 405, "method_not_allowed"),
        call(
            "DELETE /metrics",
            Method::DELETE,
            "/metrics",
            405,
            Some("method_not_allowed"),
        ),
        call(
            "PUT /info",
            Method::PUT,
            "/info",
            405,
            Some("method_not_allowed"),
        ),
        call(
            "GET /playground/other.js",
            Method::GET,
            "/playground/other.js",
            404,
            Some("not_found"),
        ),
        call("GET /v1", Method::GET, "/v1", 404, Some("not_found")),
        json_post("POST /v1/rewards", "/v1/rewards", 404, "not_found"),
        json_post("POST /v2/embed", "/v2/embed", 404, "not_found"),
        json_post(
            "POST /v1/embed/ (trailing slash)",
            "/v1/embed/",
            404,
            "not_found",
        ),
        json_post("POST /v1/EMBED (case)", "/v1/EMBED", 404, "not_found"),
        call(
            "GET /healthz?probe=1",
            Method::GET,
            "/healthz?probe=1",
            404,
            Some("not_found"),
        ),
        call(
            "GET /../etc/passwd",
            Method::GET,
            "/%2e%2e/etc/passwd",
            404,
            Some("not_found"),
        ),
    ]
}

/// Requests only raw TCP can send. Hyper answers the malformed ones itself, with an empty
/// body, before any application code runs (a known limitation: those assert the status only).
fn tcp_cases() -> Vec<Case> {
    let head = |extra: &str| {
        format!(
            "POST /v1/embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n{extra}\r\n"
        )
        .into_bytes()
    };
    let get_health = |target: &str, headers: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n")
            .into_bytes()
    };
    let query = |n: usize| format!("/health?{}", "a".repeat(n));
    let pad = |n: usize| format!("X-Pad: {}\r\n", "b".repeat(n));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let mut chunked = head("Transfer-Encoding: chunked\r\n");
    chunked.extend_from_slice(b"zz\r\n{}\r\n0\r\n\r\n");
    let mut short = head("Content-Length: 100\r\n");
    short.extend_from_slice(b"{\"images\": [");
    vec![
        // hyper: 400, empty body.
        tcp(
            "tcp: negative Content-Length",
            [head("Content-Length: -1\r\n"), b"{}".to_vec()].concat(),
            400,
            None,
        ),
        // hyper: 400, empty body.
        tcp(
            "tcp: non-numeric Content-Length",
            [head("Content-Length: ten\r\n"), b"{}".to_vec()].concat(),
            400,
            None,
        ),
        // hyper: 400, empty body.
        tcp(
            "tcp: conflicting Content-Lengths",
            [
                head("Content-Length: 2\r\nContent-Length: 3\r\n"),
                b"{}".to_vec(),
            ]
            .concat(),
            400,
            None,
        ),
        // The service's own head limits (8 KiB target, 64 KiB / 128 header fields): JSON.
        tcp(
            "tcp: URI over 8 KiB",
            get_health(&query(10 * 1024), ""),
            414,
            Some("uri_too_long"),
        ),
        tcp(
            "tcp: 200 header fields",
            get_health("/health", &many),
            431,
            Some("headers_too_large"),
        ),
        tcp(
            "tcp: a 100 KB header",
            get_health("/health", &pad(100_000)),
            431,
            Some("headers_too_large"),
        ),
        tcp(
            "tcp: a 600 KiB header",
            get_health("/health", &pad(600 * 1024)),
            431,
            Some("headers_too_large"),
        ),
        tcp(
            "tcp: a URI just under the limit",
            get_health(&query(8 * 1024 - 100), ""),
            200,
            None,
        ),
        // hyper: 414, empty body (its hard URI limit, before any service code).
        tcp(
            "tcp: URI over 64 KiB",
            get_health(&query(70 * 1024), ""),
            414,
            None,
        ),
        // hyper: 431, empty body (over its 1 MiB read buffer).
        tcp(
            "tcp: header block over hyper's buffer",
            get_health("/health", &pad(1200 * 1024)),
            431,
            None,
        ),
        // hyper: 400, empty body.
        tcp(
            "tcp: garbage request line",
            b"HELLO\r\n\r\n".to_vec(),
            400,
            None,
        ),
        tcp(
            "tcp: broken chunked encoding",
            chunked,
            400,
            Some("invalid_body"),
        ),
        // The client ends its body early: hyper reports the cut body to the extractor.
        tcp(
            "tcp: body shorter than its Content-Length",
            short,
            400,
            Some("invalid_body"),
        )
        .half_close(),
        // A body announced as 1 GB is read only up to the 256 KiB limit.
        tcp(
            "tcp: Content-Length over the body limit",
            [
                head("Content-Length: 999999999\r\n"),
                vec![b' '; 300 * 1024],
            ]
            .concat(),
            413,
            Some("payload_too_large"),
        ),
    ]
}

/// What came back: status, content type, body.
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

async fn send_http(s: &TestServer, request: &Request) -> Result<Answer, String> {
    let Request::Http {
        method,
        path,
        content_type,
        body,
    } = request
    else {
        unreachable!("an HTTP request")
    };
    let mut req = s
        .client
        .request(method.clone(), s.url(path))
        .body(body.clone());
    if let Some(ct) = content_type {
        req = req.header("content-type", *ct);
    }
    let resp = req.send().await.map_err(|e| format!("no answer: {e}"))?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.map_err(|e| format!("body cut: {e}"))?;
    Ok(Answer {
        status,
        content_type,
        body: body.to_vec(),
    })
}

/// Writes `raw` on a fresh connection (concurrently, ignoring write errors: hyper may close
/// before reading everything) and reads the answer until the server closes. The write side
/// stays open (the writer task returns it) unless `half_close`.
async fn send_tcp(s: &TestServer, raw: &[u8], half_close: bool) -> Result<Answer, String> {
    let addr = s.base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let raw = raw.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&raw).await;
        if half_close {
            let _ = wr.shutdown().await;
        }
        wr
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if buf.is_empty() => return Err(format!("read: {e}")),
                Err(_) => return Ok(()),
            }
        }
    })
    .await;
    writer.abort();
    read.map_err(|_| "no answer within 10 s".to_string())??;
    let text_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {:?}", String::from_utf8_lossy(&buf)))?;
    let head = String::from_utf8_lossy(&buf[..text_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let content_type = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-type")
            .then(|| v.trim().to_string())
    });
    Ok(Answer {
        status,
        content_type,
        body: buf[text_end + 4..].to_vec(),
    })
}

/// Checks one answer against its case; `Err` describes every difference.
fn check(case: &Case, answer: &Answer) -> Result<(), String> {
    let text = String::from_utf8_lossy(&answer.body);
    let shown: String = text.chars().take(300).collect();
    let mut problems = Vec::new();
    if answer.status != case.status {
        problems.push(format!("status {} (want {})", answer.status, case.status));
    }
    match case.error_type {
        Some(kind) => {
            if answer.content_type.as_deref() != Some("application/json") {
                problems.push(format!("content type {:?}", answer.content_type));
            }
            match serde_json::from_slice::<Value>(&answer.body) {
                Err(e) => problems.push(format!("body is not JSON ({e})")),
                Ok(v) => {
                    let error = v["error"].as_str().unwrap_or("");
                    if error.is_empty() {
                        problems.push("no `error` message".into());
                    }
                    if v["error_type"].as_str() != Some(kind) {
                        problems.push(format!("error_type {} (want {kind})", v["error_type"]));
                    }
                    if let Some(m) = &case.mentions {
                        if !error.contains(m.as_str()) {
                            problems.push(format!("error does not mention `{m}`"));
                        }
                    }
                }
            }
        }
        None => {
            if let Some(m) = &case.mentions {
                if !text.contains(m.as_str()) {
                    problems.push(format!("body does not contain `{m}`"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; body: {shown}", problems.join(", ")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_status_and_error_type() {
    let main = TestServer::start_with(default_manifest(), main_config()).await;
    let pixels = TestServer::start_with(default_manifest(), pixels_config()).await;
    let cases: Vec<Case> = [
        embed_cases(),
        detect_cases(),
        reward_cases(),
        pixel_cases(),
        route_cases(),
        tcp_cases(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name.as_str()),
            "duplicate case name {}",
            c.name
        );
    }
    let started = std::time::Instant::now();
    let mut failures = String::new();
    for case in &cases {
        let server = match case.on {
            On::Main => &main,
            On::Pixels => &pixels,
        };
        let answer = match &case.request {
            Request::Http { .. } => send_http(server, &case.request).await,
            Request::Tcp { raw, half_close } => send_tcp(server, raw, *half_close).await,
        };
        if let Err(problem) = answer.and_then(|a| check(case, &a)) {
            let _ = writeln!(failures, "  {}: {problem}", case.name);
        }
    }
    let routes = [
        "/v1/embed",
        "/v1/detect",
        "/v1/reward",
        "/health",
        "/ready",
        "/info",
        "/metrics",
    ];
    for route in routes {
        assert!(
            cases
                .iter()
                .any(|c| matches!(&c.request, Request::Http { path, .. } if path == route)),
            "no case for {route}"
        );
    }
    println!(
        "bad-input catalogue: {} cases in {:.1} s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    // Still serving real work after the whole catalogue.
    let (status, _, body) = main
        .post("/v1/embed", &json!({"images": [solid_b64(16, 16, RED)]}))
        .await;
    assert_eq!(status, 200, "{body}");
    main.stop().await;
    pixels.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} catalogue cases failed:\n{failures}",
        failures.lines().count(),
        cases.len()
    );
}
