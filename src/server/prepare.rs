//! CPU-pool work shared by the routes: decoding a request's base64 images and preprocessing
//! them into model tensors, with errors mapped to HTTP.

use crate::imaging::{self, DecodedImage, PooledTensor, Preprocess, TensorPool};
use std::borrow::Cow;

use super::error::ApiError;
use super::state::AppState;

/// Decodes one base64 image under `limits`.
pub fn decode(b64: &str, limits: &imaging::DecodeLimits) -> Result<DecodedImage, ApiError> {
    imaging::decode_base64(b64, limits).map_err(ApiError::from)
}

/// Preprocesses a decoded image into a pooled tensor.
pub fn tensor(
    image: &image::RgbImage,
    preprocess: &Preprocess,
    pool: &TensorPool,
) -> Result<PooledTensor, ApiError> {
    imaging::to_tensor(image, preprocess, pool)
        .map_err(|e| ApiError::invalid(format!("cannot preprocess image: {e}")))
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
