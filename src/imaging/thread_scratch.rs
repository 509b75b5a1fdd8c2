//! Per-thread scratch buffers for decoding and preprocessing, so that steady-state work on
//! the CPU pool allocates no intermediate image buffers.

use std::cell::RefCell;

use super::pillow::ModeScratch;
use super::resize::{ResizeError, Resizer};
use super::{
    decode_image, DecodeLimits, DecodedImage, ImageError, PooledTensor, Preprocess, TensorPool,
};

/// Scratch capacity a thread keeps between jobs. Typical work (a 1333×800 detector input, a
/// 224×224 crop, a few-MB encoded image) fits; a rare larger job frees its buffers when done,
/// so one spike does not stay resident in every CPU-pool thread.
const MAX_RETAINED_BYTES: usize = 8 << 20;

struct Scratch {
    bytes: Vec<u8>,
    resized: Vec<u8>,
    resizer: Resizer,
    modes: ModeScratch,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        bytes: Vec::new(),
        resized: Vec::new(),
        resizer: Resizer::new(),
        modes: ModeScratch::default(),
    });
}

/// Decodes one base64 image under `limits`, reusing this thread's byte buffer.
pub fn decode_base64(b64: &str, limits: &DecodeLimits) -> Result<DecodedImage, ImageError> {
    SCRATCH.with(|s| {
        let bytes = &mut s.borrow_mut().bytes;
        let decoded = decode_image(b64, limits, bytes);
        release_spike(bytes);
        decoded
    })
}

/// Preprocesses an RGB image into a pooled tensor, reusing this thread's resize buffers.
pub fn to_tensor(
    image: &image::RgbImage,
    preprocess: &Preprocess,
    pool: &TensorPool,
) -> Result<PooledTensor, ResizeError> {
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        let tensor = preprocess.run(image, &mut s.resizer, &mut s.resized, pool);
        release_spike(&mut s.resized);
        s.resizer.shrink_to(MAX_RETAINED_BYTES);
        tensor
    })
}

/// Preprocesses a decoded image as Pillow would in its own mode (see
/// [`Preprocess::run_in_mode`]), reusing this thread's buffers.
pub fn to_tensor_in_mode(
    image: &DecodedImage,
    preprocess: &Preprocess,
    pool: &TensorPool,
) -> Result<PooledTensor, ResizeError> {
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        let scratch = (&mut s.modes, &mut s.resized);
        let size = image.rgb.dimensions();
        let tensor =
            preprocess.run_in_mode(image.mode_pixels(), size, &mut s.resizer, scratch, pool);
        release_spike(&mut s.resized);
        s.modes.shrink_to(MAX_RETAINED_BYTES);
        s.resizer.shrink_to(MAX_RETAINED_BYTES);
        tensor
    })
}

/// Frees a buffer that grew past [`MAX_RETAINED_BYTES`].
fn release_spike(buf: &mut Vec<u8>) {
    if buf.capacity() > MAX_RETAINED_BYTES {
        *buf = Vec::new();
    }
}
