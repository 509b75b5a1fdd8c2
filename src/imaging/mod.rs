//! Images in, model tensors out: bounded decoding, Pillow-exact resampling, torchvision-exact
//! cropping, and normalisation into NCHW `f32` buffers drawn from a pool.

mod decode;
mod preprocess;
pub mod resize;
pub use resize::Window;
mod tensor;
mod thread_scratch;

pub use decode::{
    content_hash, decode_base64_into, decode_bytes, decode_image, probe, DecodeLimits,
    DecodedImage, EncodedImage, ImageError, ImageHeader,
};
pub use preprocess::{Normalize, Plan, Preprocess, ResizeRule, CLIP, IMAGENET, UNIT};
pub use tensor::{PooledTensor, TensorPool};
pub use thread_scratch::{decode_base64, to_tensor};
