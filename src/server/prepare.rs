//! CPU-pool work shared by the routes: decoding base64 images and preprocessing them into
//! model tensors, with per-thread scratch buffers so steady-state requests allocate no
//! intermediate image buffers.

use std::borrow::Cow;
use std::cell::RefCell;

use crate::imaging::resize::Resizer;
use crate::imaging::{
    decode_image, DecodeLimits, DecodedImage, PooledTensor, Preprocess, TensorPool,
};

use super::error::ApiError;
use super::state::AppState;

struct Scratch {
    bytes: Vec<u8>,
    resized: Vec<u8>,
    resizer: Resizer,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        bytes: Vec::new(),
        resized: Vec::new(),
        resizer: Resizer::new(),
    });
}

/// Decodes one base64 image under `limits`.
pub fn decode(b64: &str, limits: &DecodeLimits) -> Result<DecodedImage, ApiError> {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        decode_image(b64, limits, &mut s.bytes).map_err(ApiError::from)
    })
}

/// Preprocesses a decoded image into a pooled tensor.
pub fn tensor(
    image: &image::RgbImage,
    preprocess: &Preprocess,
    pool: &TensorPool,
) -> Result<PooledTensor, ApiError> {
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        preprocess
            .run(image, None, &mut s.resizer, &mut s.resized, pool)
            .map_err(|e| ApiError::invalid(format!("cannot preprocess image: {e}")))
    })
}

/// Checks a request's image count against the limit, then decodes every image in parallel on
/// the CPU pool and maps each through `f`; errors name the offending `images[i]`.
pub fn decode_each<T: Send>(
    state: &AppState,
    images: &[Cow<'_, str>],
    f: impl Fn(DecodedImage) -> Result<T, ApiError> + Sync + Send,
) -> Result<Vec<T>, ApiError> {
    let max = state.config().limits.max_items_per_request;
    if images.is_empty() || images.len() > max {
        return Err(ApiError::invalid(format!(
            "images must hold 1..={max} images"
        )));
    }
    let limits = state.decode_limits();
    state
        .cpu()
        .map(images.iter().enumerate().collect(), |(i, b64)| {
            decode(b64, &limits)
                .and_then(&f)
                .map_err(|e| e.at(format_args!("images[{i}]")))
        })
        .into_iter()
        .collect()
}
