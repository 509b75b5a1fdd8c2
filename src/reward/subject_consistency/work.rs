//! The bookkeeping of one request: images as the models see them, crop choices, deduplicated
//! embedding jobs, and the stages that run them through the lanes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;

use super::super::cache::CachedReference;
use super::super::copy_paste::Thumbnail;
use super::super::crop;
use super::super::Fallback;
use super::types::{ItemInput, ScError, ScServices, StageTiming};
use crate::batcher::{await_all, SubmitOptions, Ticket};
use crate::imaging::{self, DecodedImage, PillowMode};
use crate::models::{Detection, TokenizeError};

/// An image of the request as the models see it.
pub(super) struct Img {
    /// RGB pixels used for detection and crops (alpha dropped or composited).
    pub(super) pixels: Pixels,
    pub(super) detectable: bool,
    /// The Pillow mode the file opens in.
    pub(super) mode: PillowMode,
}

/// An image's pixels: the decoded image itself (shared, never copied) as RGB, or as Pillow
/// holds it in its own mode (`alpha: skip_detection`, the scripts' rule), or its composite
/// on white when the options ask for one.
#[derive(Clone)]
pub(super) enum Pixels {
    Decoded(Arc<DecodedImage>),
    AsOpened(Arc<DecodedImage>),
    Composited(Arc<RgbImage>),
}

impl Pixels {
    /// The RGB pixels (what detection and box crops use).
    pub(super) fn rgb(&self) -> &RgbImage {
        match self {
            Pixels::Decoded(d) | Pixels::AsOpened(d) => &d.rgb,
            Pixels::Composited(c) => c,
        }
    }
}

pub(super) enum RefState {
    Cached(CachedReference),
    /// Index into the pending references.
    Pending(usize),
}

/// A crop (or the whole image) to embed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct EmbedKey {
    pub(super) image: usize,
    pub(super) window: Option<crop::Window>,
}

/// Where a subject's generated embedding comes from, and how it is reported.
#[derive(Clone, Copy)]
pub(super) struct Choice {
    pub(super) embed: usize,
    pub(super) detected: bool,
    pub(super) bbox: Option<[i64; 4]>,
    pub(super) fallback: Option<Fallback>,
    /// The image's Pillow mode when the fallback is `non_rgb`.
    pub(super) fallback_mode: Option<&'static str>,
}

/// Subjects of one item sharing a category, decided by assignment after embedding.
pub(super) struct Group {
    pub(super) item: usize,
    pub(super) members: Vec<usize>,
    pub(super) candidates: Vec<Choice>,
    /// The whole image, when there are fewer candidates than members.
    pub(super) whole: Option<Choice>,
}

/// Embedding jobs, deduplicated (several subjects falling back to one whole image share it).
#[derive(Default)]
pub(super) struct EmbedJobs {
    pub(super) keys: Vec<EmbedKey>,
    pub(super) index: HashMap<EmbedKey, usize>,
}

impl EmbedJobs {
    pub(super) fn add(&mut self, key: EmbedKey) -> usize {
        *self.index.entry(key).or_insert_with(|| {
            self.keys.push(key);
            self.keys.len() - 1
        })
    }

    /// The crop of a kept detection of image `img`, or the whole image when nothing was kept
    /// (`not_detected`) or the box selects no pixels (`empty_crop`), as the scripts fall back.
    pub(super) fn crop(
        &mut self,
        images: &[Img],
        img: usize,
        rule: crop::CropRule,
        det: Option<&Detection>,
    ) -> Choice {
        let Some(d) = det else {
            return Choice {
                embed: self.add(EmbedKey {
                    image: img,
                    window: None,
                }),
                detected: false,
                bbox: None,
                fallback: Some(Fallback::NotDetected),
                fallback_mode: None,
            };
        };
        let (w, h) = images[img].pixels.rgb().dimensions();
        let b = crop::truncate_box(d.bbox);
        let window = crop::window(b, w, h, rule);
        Choice {
            embed: self.add(EmbedKey { image: img, window }),
            detected: true,
            bbox: Some(b),
            fallback: window.is_none().then_some(Fallback::EmptyCrop),
            fallback_mode: None,
        }
    }

    /// The whole image as opened, for an image the scripts do not detect (`non_rgb`).
    pub(super) fn whole_non_rgb(&mut self, images: &[Img], img: usize) -> Choice {
        Choice {
            embed: self.add(EmbedKey {
                image: img,
                window: None,
            }),
            detected: false,
            bbox: None,
            fallback: Some(Fallback::NonRgb),
            fallback_mode: Some(images[img].mode.name()),
        }
    }
}

/// Maps a tokenizer error on a category back to the first subject that named it.
pub(super) fn name_locator(
    items: &[ItemInput],
) -> impl Fn(&str, TokenizeError) -> ScError + Send + 'static {
    let names: Vec<(usize, usize, String)> = items
        .iter()
        .enumerate()
        .flat_map(|(i, it)| {
            it.subjects
                .iter()
                .enumerate()
                .map(move |(s, sub)| (i, s, sub.name.clone()))
        })
        .collect();
    move |name, source| {
        let (item, subject) = names
            .iter()
            .find(|(_, _, n)| n == name)
            .map_or((0, 0), |(i, s, _)| (*i, *s));
        ScError::Name {
            item,
            subject,
            source,
        }
    }
}

/// Per embedding job, its embedding (or why it was rejected) and the copy-paste guard's
/// thumbnail of the same pixels.
pub(super) struct Embedded {
    pub(super) outputs: Vec<crate::models::ImageOutput>,
    pub(super) thumbnails: Vec<Option<Arc<Thumbnail>>>,
}

/// Preprocesses every crop on the CPU pool and embeds them all in one submission; the
/// guard's thumbnails are taken from the same crops on the way. A whole image kept as opened is
/// resampled as Pillow does in its mode; crops and composites are RGB.
pub(super) async fn embed_all(
    svc: &ScServices,
    embedder: &crate::models::ImageLane,
    images: &[Img],
    keys: &[EmbedKey],
    submit: SubmitOptions,
    timing: &mut StageTiming,
) -> Result<Embedded, ScError> {
    let work: Vec<(Pixels, Option<crop::Window>)> = keys
        .iter()
        .map(|k| (images[k.image].pixels.clone(), k.window))
        .collect();
    let (pre, pool, cpu) = (
        embedder.preprocess.clone(),
        svc.tensors.clone(),
        svc.cpu.clone(),
    );
    let tensors = svc
        .cpu
        .run(move || {
            cpu.map(work, |(pixels, window)| {
                let cropped = window.map(|w| crop::crop(pixels.rgb(), w));
                let thumbnail =
                    Thumbnail::of(cropped.as_ref().unwrap_or(pixels.rgb())).map(Arc::new);
                let result = match (&cropped, &pixels) {
                    (Some(c), _) => imaging::to_tensor(c, &pre, &pool),
                    (None, Pixels::AsOpened(d)) => imaging::to_tensor_in_mode(d, &pre, &pool),
                    (None, _) => imaging::to_tensor(pixels.rgb(), &pre, &pool),
                };
                result
                    .map(|t| (t, thumbnail))
                    .map_err(|e| ScError::Preprocess(e.to_string()))
            })
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
        })
        .await??;
    let (tensors, thumbnails): (Vec<_>, Vec<_>) = tensors.into_iter().unzip();
    let outputs = collect(
        embedder.batcher.submit(tensors, submit)?,
        submit.deadline,
        timing,
    )
    .await?;
    Ok(Embedded {
        outputs,
        thumbnails,
    })
}

/// Awaits a stage's tickets under the deadline; stages run one after the other, so their
/// inference times add up.
pub(super) async fn collect<O>(
    tickets: Vec<Ticket<O>>,
    deadline: Instant,
    timing: &mut StageTiming,
) -> Result<Vec<O>, ScError> {
    let (out, times) = await_all(tickets, deadline).await?;
    timing.queue = timing.queue.max(times.queue);
    timing.inference += times.inference;
    Ok(out)
}

/// Cosine similarity in f64 (the scripts L2-normalise then take the dot product).
pub(super) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}
