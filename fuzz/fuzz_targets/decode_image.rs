//! base64 + image decoding under the service's default limits (any bytes: PNG, JPEG, WebP,
//! GIF, 16-bit, CMYK, truncated, bombs): an error or an image that respects the limits.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

use psr_reward::imaging::{decode_image, DecodeLimits};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    static LIMITS: OnceLock<DecodeLimits> = OnceLock::new();
    let limits = *LIMITS.get_or_init(psr_reward_fuzz::default_decode_limits);
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let text = match mode % 4 {
        // The bytes as the base64 text itself (alphabet, padding, whitespace, data URLs).
        0 => String::from_utf8_lossy(bytes).into_owned(),
        1 => format!("data:image/png;base64,{b64}"),
        _ => b64,
    };
    let mut scratch = Vec::new();
    let Ok(img) = decode_image(&text, &limits, &mut scratch) else {
        return;
    };
    let (w, h) = img.rgb.dimensions();
    assert!(w > 0 && h > 0 && w <= limits.max_side && h <= limits.max_side);
    assert!(u64::from(w) * u64::from(h) <= limits.max_pixels);
    assert_eq!(img.rgb.as_raw().len(), w as usize * h as usize * 3);
    if let Some(alpha) = &img.alpha {
        assert_eq!(alpha.dimensions(), (w, h));
    }
    assert_eq!(img.content_hash.len(), 32);
    let _ = img.is_pillow_rgb();
    assert_eq!(img.composited_on_white().dimensions(), (w, h));
});
