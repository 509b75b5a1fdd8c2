//! CPU-pool work shared by the routes and RPCs: reading a request's images (base64 or raw),
//! admitting the request by what they decode to, decoding and preprocessing them into model
//! tensors, with errors mapped to [`ApiError`].

use crate::imaging::{self, EncodedImage, PooledTensor, Preprocess, TensorPool};

use super::admission::{BytesPermit, RequestCost};
use super::error::ApiError;
use super::images::ImageSource;
use super::state::AppState;

/// Reads one image out of its encoding and checks its header (no pixel is decoded yet).
pub fn read(
    image: &ImageSource<'_>,
    limits: &imaging::DecodeLimits,
) -> Result<EncodedImage, ApiError> {
    image.read(limits).map_err(ApiError::from)
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

/// Reads every image in parallel on the CPU pool; errors name the image by `path(i)`.
pub fn read_all(
    state: &AppState,
    images: &[ImageSource<'_>],
    path: impl Fn(usize) -> String + Sync,
) -> Result<Vec<EncodedImage>, ApiError> {
    let limits = state.decode_limits();
    state
        .cpu()
        .map(images.iter().enumerate().collect(), |(i, image)| {
            read(image, &limits).map_err(|e| e.at(path(i)))
        })
        .into_iter()
        .collect()
}

/// Checks a request's image count, reads every image, admits the request by its decoded
/// pixels plus one `preprocess` tensor per image, then decodes in parallel and maps each
/// image through `f`. Errors name the offending `images[i]`. The permit holds the request's
/// share of the in-flight budget until it is dropped.
pub fn decode_each<T: Send>(
    state: &AppState,
    images: &[ImageSource<'_>],
    preprocess: &Preprocess,
    f: impl Fn(imaging::DecodedImage) -> Result<T, ApiError> + Sync + Send,
) -> Result<(Vec<T>, BytesPermit), ApiError> {
    let max = state.config().limits.max_items_per_request;
    if images.is_empty() || images.len() > max {
        return Err(ApiError::invalid(format!(
            "images must hold 1..={max} images"
        )));
    }
    let encoded = read_all(state, images, |i| format!("images[{i}]"))?;
    let mut cost = RequestCost::default();
    for e in &encoded {
        cost.image(&e.header);
        cost.tensors(preprocess, (e.header.width, e.header.height), 1);
    }
    let permit = state.admission().bytes(&cost)?;
    let limits = state.decode_limits();
    let values = state
        .cpu()
        .map(encoded.into_iter().enumerate().collect(), |(i, e)| {
            e.decode(&limits)
                .map_err(ApiError::from)
                .and_then(&f)
                .map_err(|e| e.at(format_args!("images[{i}]")))
        })
        .into_iter()
        .collect::<Result<_, _>>()?;
    Ok((values, permit))
}
