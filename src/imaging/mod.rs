//! Images in, model tensors out: bounded decoding, Pillow-exact resampling (in the image's own
//! mode where the PSR scripts resample it so: `pillow`), torchvision-exact cropping, and
//! normalisation into NCHW `f32` buffers drawn from a pool.

mod decode;
mod mode;
pub mod pillow;
mod preprocess;
pub mod resize;
mod samples;
pub use resize::Window;
mod tensor;
mod thread_scratch;

pub use decode::{
    content_hash, decode_base64_into, decode_bytes, decode_image, probe, DecodeLimits,
    DecodedImage, EncodedImage, ImageError, ImageHeader, NativeSamples,
};
pub use mode::PillowMode;
pub use pillow::ModePixels;
pub use preprocess::{Normalize, Plan, Preprocess, ResizeRule, CLIP, IMAGENET, UNIT};
pub use tensor::{PooledTensor, TensorPool};
pub use thread_scratch::{decode_base64, to_tensor, to_tensor_in_mode};
