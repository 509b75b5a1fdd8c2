//! Explanations of a reward (`"explain": true`): what subject consistency looked at. Per item
//! the generated image with each subject's crop outlined and labelled (name, similarity,
//! fallback, copy-paste suspicion), and per subject the generated crop and the reference crop
//! the embedder saw, as small PNGs. Sizes are bounded: the image's long side at most
//! [`MAX_IMAGE_SIDE`], crops at most [`MAX_CROP_SIDE`], at most [`MAX_ITEMS`] items a request.

mod annotate;
mod png;

use std::sync::Arc;

use image::RgbImage;
use serde::Serialize;

use crate::imaging::DecodedImage;
use crate::reward::crop::{self, Window};
use crate::reward::engine::ScComponent;
use crate::reward::{Fallback, ScOptions, SubjectScore};

pub use annotate::PALETTE;
pub use png::Png;

/// Longest side of the annotated image (larger images are scaled down, boxes with them).
pub const MAX_IMAGE_SIDE: u32 = 1024;
/// Longest side of a crop PNG.
pub const MAX_CROP_SIDE: u32 = 256;
/// Most items a request may ask explanations for (each costs a PNG encode of up to 1024²).
pub const MAX_ITEMS: usize = 8;

/// What an explanation is drawn from: the decoded generated image and, per subject, its
/// reference image when the request carried one (a reference sent by hash has no pixels
/// here, so its crop is null).
pub struct ExplainInput {
    pub image: Arc<DecodedImage>,
    pub references: Vec<Option<Arc<DecodedImage>>>,
}

/// One item's explanation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    /// PNG (base64): the generated image, long side at most 1024, each subject's crop
    /// outlined in its colour (`colors`) and labelled; subjects embedded whole are listed at
    /// the top left.
    #[schema(value_type = String)]
    pub image: Png,
    /// Size of `image` over the generated image's (boxes scale by it).
    pub scale: f64,
    /// Per subject, in request order.
    pub subjects: Vec<SubjectCrops>,
}

/// The two crops one subject's similarity compares.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubjectCrops {
    pub name: String,
    /// The subject's outline and label colour in `image`, `#rrggbb`.
    pub color: String,
    /// PNG (base64) of the generated image's crop that was embedded (the whole image on a
    /// fallback), long side at most 256.
    #[schema(value_type = String)]
    pub generated_crop: Png,
    /// PNG (base64) of the reference's crop, or null for a reference sent by hash.
    #[schema(value_type = Option<String>)]
    pub reference_crop: Option<Png>,
}

/// Why an explanation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Draw(#[from] annotate::DrawError),
    #[error(transparent)]
    Encode(#[from] png::EncodeError),
}

/// The explanation of one item whose subject consistency is `sc` (none: not computed, or
/// failed; then only the image comes back).
pub fn explain(
    input: &ExplainInput,
    sc: Option<&ScComponent>,
    options: ScOptions,
) -> Result<Explanation, ExplainError> {
    let generated = options.crop_source(&input.image);
    let subjects = sc.map_or(&[][..], |c| c.subjects.as_slice());
    let windows: Vec<Option<Window>> = subjects
        .iter()
        .map(|s| window(s.bbox, s.fallback, &generated, options))
        .collect();
    let (fitted, scale) = png::fit(&generated, MAX_IMAGE_SIDE);
    let mut annotated = fitted.into_owned();
    let marks: Vec<annotate::Mark> = subjects
        .iter()
        .zip(&windows)
        .map(|(s, &window)| annotate::Mark {
            window,
            label: label(s),
        })
        .collect();
    annotate::annotate(&mut annotated, scale, &marks)?;
    let crops = subjects
        .iter()
        .zip(&windows)
        .zip(&input.references)
        .enumerate()
        .map(|(k, ((s, &window), reference))| {
            let reference_crop = reference
                .as_ref()
                .map(|r| reference_crop(s, r, options))
                .transpose()?;
            Ok(SubjectCrops {
                name: s.name.clone(),
                color: hex(PALETTE[k % PALETTE.len()]),
                generated_crop: crop_png(&generated, window)?,
                reference_crop,
            })
        })
        .collect::<Result<_, ExplainError>>()?;
    Ok(Explanation {
        image: Png::encode(&annotated)?,
        scale,
        subjects: crops,
    })
}

/// The window of `img` an embedding came from, given the reported box and fallback; `None`:
/// the whole image.
fn window(
    bbox: Option<[i64; 4]>,
    fallback: Option<Fallback>,
    img: &RgbImage,
    options: ScOptions,
) -> Option<Window> {
    if fallback.is_some() {
        return None;
    }
    let (w, h) = img.dimensions();
    crop::window(bbox?, w, h, options.crop_rule())
}

fn reference_crop(
    s: &SubjectScore,
    reference: &DecodedImage,
    options: ScOptions,
) -> Result<Png, ExplainError> {
    let pixels = options.crop_source(reference);
    let window = window(s.reference_box, s.reference_fallback, &pixels, options);
    crop_png(&pixels, window)
}

/// The crop (or the whole image) fitted into [`MAX_CROP_SIDE`], as PNG.
fn crop_png(img: &RgbImage, window: Option<Window>) -> Result<Png, ExplainError> {
    let cropped;
    let source = match window {
        Some(w) => {
            cropped = crop::crop(img, w);
            &cropped
        }
        None => img,
    };
    let (fitted, _) = png::fit(source, MAX_CROP_SIDE);
    Ok(Png::encode(&fitted)?)
}

/// `cat 0.873`, with what replaced the crop and a copy-paste suspicion when there is one.
fn label(s: &SubjectScore) -> String {
    let mut text = format!("{} {:.3}", s.name, s.similarity);
    if let Some(f) = s.fallback {
        text.push_str(match f {
            Fallback::NotDetected => " not detected: whole image",
            Fallback::NonRgb => " not RGB: whole image",
            Fallback::EmptyCrop => " empty crop: whole image",
        });
    }
    if s.copy_paste.suspected {
        text.push_str(" copy-paste?");
    }
    text
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}
