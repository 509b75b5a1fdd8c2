//! Stage 1 of subject consistency: the detector passes a request needs (which image, which
//! categories) and their answers. Every pass of a request leaves through the detector lane in
//! one submission, so items, subjects and references batch with each other and with other
//! callers.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::{DetectionRule, ScOptions};
use super::types::{ItemInput, ScError, ScServices, StageTiming};
use super::work::{collect, name_locator, Img, Pixels};
use crate::batcher::SubmitOptions;
use crate::imaging;
use crate::models::{Detection, DetectorItem, DetectorLane, DetectorOutput, Prompt};

/// One detector pass: an image of the request and the categories asked of it.
pub(super) struct Pass {
    pub(super) image: usize,
    pub(super) categories: Vec<String>,
}

/// The passes of a request, and which pass answers each question.
pub(super) struct DetectionPlan {
    pub(super) passes: Vec<Pass>,
    /// Per item: category -> the pass over its generated image.
    pub(super) generated: Vec<HashMap<String, usize>>,
    /// Per pending reference: its pass, or `None` when its image is not detected (non-RGB
    /// under the scripts' rule).
    pub(super) references: Vec<Option<usize>>,
}

impl DetectionPlan {
    /// One pass per (generated image, category), or one per generated image with all its
    /// categories in a joint caption (`detection: "joint"`, and always for closed-set
    /// detectors, which answer every class at once); one per pending reference.
    pub(super) fn new(
        items: &[ItemInput],
        images: &[Img],
        generated: &[usize],
        pending: &[(super::super::cache::CacheKey, usize)],
        joint: bool,
    ) -> Self {
        let mut plan = Self {
            passes: Vec::new(),
            generated: vec![HashMap::new(); items.len()],
            references: vec![None; pending.len()],
        };
        for (i, item) in items.iter().enumerate() {
            let image = generated[i];
            if !images[image].detectable {
                continue;
            }
            let mut names: Vec<String> = Vec::new();
            for s in &item.subjects {
                if !names.contains(&s.name) {
                    names.push(s.name.clone());
                }
            }
            if joint {
                let pass = plan.add(image, names.clone());
                plan.generated[i].extend(names.into_iter().map(|n| (n, pass)));
            } else {
                for n in names {
                    let pass = plan.add(image, vec![n.clone()]);
                    plan.generated[i].insert(n, pass);
                }
            }
        }
        for (p, (key, image)) in pending.iter().enumerate() {
            if images[*image].detectable {
                plan.references[p] = Some(plan.add(*image, vec![key.category.clone()]));
            }
        }
        plan
    }

    /// Whether this request detects every category of an image in one pass.
    pub(super) fn joint(opts: ScOptions, detector: &DetectorLane) -> bool {
        opts.detection == DetectionRule::Joint || detector.single_pass()
    }

    fn add(&mut self, image: usize, categories: Vec<String>) -> usize {
        self.passes.push(Pass { image, categories });
        self.passes.len() - 1
    }
}

/// The detector's answers to a plan's passes.
pub(super) struct Detections<'a> {
    detector: &'a DetectorLane,
    passes: Vec<Pass>,
    /// Per pass, the source image's size (boxes are scaled to it).
    sizes: Vec<(u32, u32)>,
    outputs: Vec<DetectorOutput>,
    prompts: Vec<Prompt>,
    /// Per pass, why its output was rejected (NaN, absurd boxes); a rejected pass finds
    /// nothing and fails the items that use it.
    pub(super) rejected: Vec<Option<String>>,
}

impl<'a> Detections<'a> {
    /// Runs every pass through the detector lane in one submission.
    pub(super) async fn run(
        svc: &ScServices,
        detector: &'a DetectorLane,
        images: &[Img],
        passes: Vec<Pass>,
        items: &[ItemInput],
        (opts, submit): (ScOptions, SubmitOptions),
        timing: &mut StageTiming,
    ) -> Result<Self, ScError> {
        let (inputs, prompts) = detector_inputs(svc, images, &passes, items, opts).await?;
        let outputs = collect(
            detector.batcher.submit(inputs, submit)?,
            submit.deadline,
            timing,
        )
        .await?;
        let rejected = outputs
            .iter()
            .map(|o| detector.validate(o).err().map(|e| e.to_string()))
            .collect();
        let sizes = passes
            .iter()
            .map(|p| images[p.image].pixels.rgb().dimensions())
            .collect();
        Ok(Self {
            detector,
            passes,
            sizes,
            outputs,
            prompts,
            rejected,
        })
    }

    /// The kept detections of `category` in pass `pass`, in query order (the PSR box is the
    /// first); none when the pass was rejected.
    pub(super) fn of(&self, pass: usize, category: &str) -> Vec<Detection> {
        if self.rejected[pass].is_some() {
            return Vec::new();
        }
        let k = self.passes[pass]
            .categories
            .iter()
            .position(|n| n == category)
            .unwrap_or(0);
        let (w, h) = self.sizes[pass];
        self.detector.detections(
            &self.outputs[pass],
            &self.prompts[pass],
            k,
            self.detector.box_threshold,
            w,
            h,
        )
    }
}

/// Detector inputs of every pass, built on the CPU pool: each image's tensor once, however
/// many passes share it.
async fn detector_inputs(
    svc: &ScServices,
    images: &[Img],
    passes: &[Pass],
    items: &[ItemInput],
    opts: ScOptions,
) -> Result<(Vec<DetectorItem>, Vec<Prompt>), ScError> {
    let (models, pool, cpu) = (svc.models.clone(), svc.tensors.clone(), svc.cpu.clone());
    let shapes = opts.shape_rule();
    let pass_images: Vec<(usize, Pixels)> = passes
        .iter()
        .map(|p| (p.image, images[p.image].pixels.clone()))
        .collect();
    let pass_names: Vec<Vec<String>> = passes.iter().map(|p| p.categories.clone()).collect();
    let name_error = name_locator(items);
    svc.cpu
        .run(move || {
            let lane = models
                .detector
                .as_ref()
                .ok_or(ScError::NotServed("detector"))?;
            let mut unique: Vec<(usize, Pixels)> = Vec::new();
            for (img, rgb) in &pass_images {
                if !unique.iter().any(|(u, _)| u == img) {
                    unique.push((*img, rgb.clone()));
                }
            }
            let mut tensors: HashMap<usize, Arc<imaging::PooledTensor>> = HashMap::new();
            for built in cpu.map(unique, |(img, rgb)| {
                imaging::to_tensor(rgb.rgb(), &lane.preprocess, &pool).map(|t| (img, Arc::new(t)))
            }) {
                let (img, t) = built.map_err(|e| ScError::Preprocess(e.to_string()))?;
                tensors.insert(img, t);
            }
            let mut items = Vec::with_capacity(pass_images.len());
            let mut prompts = Vec::with_capacity(pass_images.len());
            for ((img, rgb), names) in pass_images.iter().zip(&pass_names) {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let prompt = lane.prompt(&refs).map_err(|e| name_error(&names[0], e))?;
                let image = tensors
                    .get(img)
                    .cloned()
                    .ok_or_else(|| ScError::Preprocess("missing detector tensor".into()))?;
                items.push(lane.item(image, &prompt, rgb.rgb().dimensions(), shapes));
                prompts.push(prompt);
            }
            Ok((items, prompts))
        })
        .await?
}
