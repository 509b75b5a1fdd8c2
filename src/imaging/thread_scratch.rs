//! Per-thread scratch buffers for decoding and preprocessing, so that steady-state work on
//! the CPU pool allocates no intermediate image buffers.

use std::cell::RefCell;

use super::resize::{ResizeError, Resizer};
use super::{
    decode_image, DecodeLimits, DecodedImage, ImageError, PooledTensor, Preprocess, TensorPool,
};

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

/// Decodes one base64 image under `limits`, reusing this thread's byte buffer.
pub fn decode_base64(b64: &str, limits: &DecodeLimits) -> Result<DecodedImage, ImageError> {
    SCRATCH.with(|s| decode_image(b64, limits, &mut s.borrow_mut().bytes))
}

/// Preprocesses an RGB image into a pooled tensor, reusing this thread's resize buffers.
pub fn to_tensor(
    image: &image::RgbImage,
    preprocess: &Preprocess,
    pool: &TensorPool,
) -> Result<PooledTensor, ResizeError> {
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        preprocess.run(image, &mut s.resizer, &mut s.resized, pool)
    })
}
