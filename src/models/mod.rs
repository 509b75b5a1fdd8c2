//! The served models: manifests, adapters, and the lanes that batch their work.

pub mod check;
mod detector_lane;
mod grounding_dino;
mod image_model;
pub mod manifest;
mod preference;
mod text_masks;
mod tokenizer;
mod validate;
mod yolo;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::batcher::{
    BackendError, BatchError, Batcher, CurvePoint, LaneConfig, LearnBudget, ModelFactory,
    SubmitOptions,
};
use crate::imaging::{PooledTensor, Preprocess};
use crate::metrics::Metrics;
use crate::runtime::{build_session, describe, ProviderChoice, SessionOptions, Signature};

use detector_lane::load_detector;
pub use detector_lane::{DetectorLane, Prompt, Vocabulary};
pub use grounding_dino::{
    Detection, DetectorItem, DetectorOutput, GroundingDino, Letterbox, ShapeRule,
};
pub use image_model::{ImageModel, OutputKind};
use manifest::{BatchingSpec, LaneSpec, Manifest};
pub use preference::{PreferenceIo, PreferenceItem, PreferenceModel};
pub use text_masks::{text_masks, TextMasks};
pub use tokenizer::{category_caption, CaptionTokenizer, TokenizeError};
pub use validate::{InvalidOutput, InvalidOutputCounter, INVALID_OUTPUT_REASONS};
pub use yolo::{decode as yolo_decode, YoloDetector};

/// Why the model set could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model `{model}`: {message}")]
    Load { model: String, message: String },
    #[error("warm-up of model `{model}` failed: {source}")]
    WarmUp { model: String, source: BatchError },
}

/// What `/info` says about one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub role: &'static str,
    pub path: String,
    /// The provider each instance really runs on.
    pub instances: Vec<ProviderChoice>,
    pub signature: Option<Signature>,
    pub batching: BatchingSpec,
    pub preprocess: String,
    /// The configured most items per batch (`batching.max_batch_size`).
    pub max_batch_size: usize,
    /// The most items per batch in force: `max_batch_size`, or the learned cap.
    pub batch_cap: usize,
    /// The throughput measured at start-up (`batching.learn_cap`); empty when not learned.
    pub batch_curve: Vec<CurvePoint>,
}

/// One image's output of an image model: its vector, or why it was rejected.
pub type ImageOutput = Result<Vec<f32>, InvalidOutput>;

/// An image-in model (embedder or scorer) behind its batcher.
pub struct ImageLane {
    pub batcher: Batcher<PooledTensor, ImageOutput>,
    pub preprocess: Arc<Preprocess>,
    info: Arc<Mutex<ModelInfo>>,
}

impl ImageLane {
    /// Wraps a running batcher (custom factories, e.g. tests that inject faults).
    pub fn new(
        batcher: Batcher<PooledTensor, ImageOutput>,
        preprocess: Preprocess,
        info: ModelInfo,
    ) -> Self {
        Self {
            batcher,
            preprocess: Arc::new(preprocess),
            info: Arc::new(Mutex::new(info)),
        }
    }
}

/// A CLIP-style preference model behind its batcher, with its tokenizer.
pub struct PreferenceLane {
    pub batcher: Batcher<PreferenceItem, Result<f32, InvalidOutput>>,
    pub preprocess: Arc<Preprocess>,
    pub tokenizer: Arc<CaptionTokenizer>,
    info: Arc<Mutex<ModelInfo>>,
}

/// Every lane of the service.
pub struct Models {
    pub detector: Option<DetectorLane>,
    pub embedder: Option<ImageLane>,
    pub aesthetic: Option<ImageLane>,
    pub preference: Option<PreferenceLane>,
}

/// What loading a lane needs besides its own manifest entry.
pub(super) struct Loader<'a> {
    pub manifest: &'a Manifest,
    pub env: &'a ort::environment::Environment,
    pub metrics: &'a Metrics,
    pub priority_levels: u8,
}

/// A started lane with its preprocessing and `/info` entry.
pub(super) struct Started<I, O> {
    pub batcher: Batcher<I, O>,
    pub preprocess: Arc<Preprocess>,
    pub info: Arc<Mutex<ModelInfo>>,
}

impl Loader<'_> {
    /// Starts the lane of `spec` in `role`: every instance a session of the entry's model,
    /// wrapped by `adapter`; the factory records each instance's real provider and the
    /// signature into the lane's info.
    pub(super) fn start<I, O, M>(
        &self,
        spec: &impl LaneSpec,
        role: &'static str,
        adapter: impl Fn(ort::session::Session) -> M + Send + Sync + 'static,
    ) -> Result<Started<I, O>, ModelError>
    where
        I: crate::batcher::Batchable + Send + 'static,
        O: Send + 'static,
        M: crate::batcher::BatchModel<Input = I, Output = O> + 'static,
    {
        let path = self.manifest.resolve(spec.path());
        let preprocess = spec.preprocess().build();
        let info = new_info(spec.name(), role, &path, spec.batching(), &preprocess);
        let runtime = spec.runtime().clone();
        let factory: ModelFactory<I, O> = {
            let (env, info) = (self.env.clone(), info.clone());
            Arc::new(move |i| {
                let opts = SessionOptions {
                    path: path.clone(),
                    provider: runtime.provider,
                    device_id: runtime.device_ids[i % runtime.device_ids.len()],
                    fallback: runtime.on_provider_failure,
                    intra_threads: runtime.intra_threads,
                };
                let (session, choice) =
                    build_session(&env, &opts).map_err(|e| BackendError(e.to_string()))?;
                record(info.as_ref(), i, choice, describe(&session));
                Ok(Box::new(adapter(session)) as _)
            })
        };
        let batching = spec.batching();
        let config = LaneConfig {
            max_batch_size: batching.max_batch_size,
            max_queue_delay: Duration::from_millis(batching.max_queue_delay_ms),
            queue_capacity: batching.queue_capacity,
            priority_levels: self.priority_levels,
            instances: spec.runtime().instances,
        };
        let batcher = Batcher::start(spec.name(), config, factory, self.metrics.lane(spec.name()))
            .map_err(|e| ModelError::Load {
                model: spec.name().to_string(),
                message: e.0,
            })?;
        Ok(Started {
            batcher,
            preprocess: Arc::new(preprocess),
            info,
        })
    }
}

/// Records each instance's provider and the signature into the shared info as it is built.
fn record(info: &Mutex<ModelInfo>, instance: usize, choice: ProviderChoice, sig: Signature) {
    let mut info = info.lock().unwrap_or_else(PoisonError::into_inner);
    if info.instances.len() <= instance {
        info.instances.resize(instance + 1, choice.clone());
    }
    info.instances[instance] = choice;
    info.signature = Some(sig);
}

impl Models {
    /// Loads every model of the manifest and starts its lane.
    pub fn load(
        manifest: &Manifest,
        env: &ort::environment::Environment,
        metrics: &Metrics,
        priority_levels: u8,
    ) -> Result<Self, ModelError> {
        let loader = Loader {
            manifest,
            env,
            metrics,
            priority_levels,
        };
        let detector = manifest
            .detector
            .as_ref()
            .map(|spec| load_detector(spec, &loader))
            .transpose()?;
        let image_lane = |spec: &manifest::ImageModelSpec, role: &'static str| {
            let (input, output, pooling) = (spec.input.clone(), spec.output.clone(), spec.pooling);
            let kind = match role {
                "embedder" => OutputKind::Embedding,
                _ => OutputKind::Score,
            };
            let check = loader.metrics.invalid_outputs(&spec.name);
            let st = loader.start(spec, role, move |session| {
                let names = (input.clone(), output.clone());
                ImageModel::new(session, names, pooling, kind, check.clone())
            })?;
            Ok::<_, ModelError>(ImageLane {
                batcher: st.batcher,
                preprocess: st.preprocess,
                info: st.info,
            })
        };
        let embedder = manifest
            .embedder
            .as_ref()
            .map(|s| image_lane(s, "embedder"))
            .transpose()?;
        let aesthetic = manifest
            .aesthetic
            .as_ref()
            .map(|s| image_lane(s, "aesthetic"))
            .transpose()?;
        let preference = manifest
            .preference
            .as_ref()
            .map(|spec| load_preference(spec, &loader))
            .transpose()?;
        Ok(Self {
            detector,
            embedder,
            aesthetic,
            preference,
        })
    }

    /// Runs one real forward pass through every lane (and so through its batcher), so the
    /// first caller does not pay for lazy initialisation, then learns the batch cap of every
    /// lane that asks for it; `/ready` turns 200 only after both.
    pub async fn warm_up(&self) -> Result<(), ModelError> {
        let opts = SubmitOptions {
            priority: 0,
            deadline: Instant::now() + Duration::from_secs(600),
        };
        if let Some(d) = &self.detector {
            let sample = detector_sample(d)?;
            await_one(&d.batcher, sample(), opts).await?;
            learn(&d.batcher, &d.info, sample).await?;
        }
        for lane in [&self.embedder, &self.aesthetic].into_iter().flatten() {
            let plan = lane.preprocess.plan(256, 256);
            let sample = || blank(plan.out_h, plan.out_w);
            await_one(&lane.batcher, sample(), opts).await?;
            learn(&lane.batcher, &lane.info, sample).await?;
        }
        if let Some(p) = &self.preference {
            let sample = preference_sample(p)?;
            await_one(&p.batcher, sample(), opts).await?;
            learn(&p.batcher, &p.info, sample).await?;
        }
        Ok(())
    }

    /// Lets every lane send its queued items without waiting for fuller batches (drain).
    pub fn release_without_delay(&self) {
        if let Some(d) = &self.detector {
            d.batcher.release_without_delay();
        }
        for lane in [&self.embedder, &self.aesthetic].into_iter().flatten() {
            lane.batcher.release_without_delay();
        }
        if let Some(p) = &self.preference {
            p.batcher.release_without_delay();
        }
    }

    /// Models whose every instance is down (being rebuilt after a panic): the service is not
    /// ready while any is.
    pub fn lanes_without_instances(&self) -> Vec<String> {
        let lanes = [
            self.detector
                .as_ref()
                .map(|d| (d.batcher.name(), d.batcher.live_instances())),
            self.embedder
                .as_ref()
                .map(|l| (l.batcher.name(), l.batcher.live_instances())),
            self.aesthetic
                .as_ref()
                .map(|l| (l.batcher.name(), l.batcher.live_instances())),
            self.preference
                .as_ref()
                .map(|l| (l.batcher.name(), l.batcher.live_instances())),
        ];
        lanes
            .into_iter()
            .flatten()
            .filter(|(_, live)| *live == 0)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Whether the aesthetic component runs in-process (a preference model or image scorer).
    pub fn has_aesthetic_model(&self) -> bool {
        self.preference.is_some() || self.aesthetic.is_some()
    }

    /// `/info` entries of every model.
    pub fn infos(&self) -> Vec<ModelInfo> {
        let d = self.detector.as_ref().map(|d| &d.info);
        let e = self.embedder.as_ref().map(|l| &l.info);
        let a = self.aesthetic.as_ref().map(|l| &l.info);
        let p = self.preference.as_ref().map(|l| &l.info);
        [d, e, a, p]
            .into_iter()
            .flatten()
            .map(|i| i.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }

    /// Stops every lane (queued items are failed, workers joined).
    pub fn shutdown(&self) {
        if let Some(d) = &self.detector {
            d.batcher.shutdown();
        }
        for lane in [&self.embedder, &self.aesthetic].into_iter().flatten() {
            lane.batcher.shutdown();
        }
        if let Some(p) = &self.preference {
            p.batcher.shutdown();
        }
    }
}

/// Loads a CLIP-style preference model with its tokenizer.
fn load_preference(
    spec: &manifest::PreferenceSpec,
    loader: &Loader<'_>,
) -> Result<PreferenceLane, ModelError> {
    let tokenizer =
        CaptionTokenizer::load(&loader.manifest.resolve(&spec.tokenizer), spec.max_text_len)
            .map_err(|e| ModelError::Load {
                model: spec.name.clone(),
                message: e.to_string(),
            })?;
    let io = PreferenceIo {
        pixel_values: spec.pixel_values.clone(),
        input_ids: spec.input_ids.clone(),
        attention_mask: spec.attention_mask.clone(),
        logits: spec.logits.clone(),
    };
    let check = loader.metrics.invalid_outputs(&spec.name);
    let st = loader.start(spec, "preference", move |session| {
        PreferenceModel::new(session, io.clone(), check.clone())
    })?;
    Ok(PreferenceLane {
        batcher: st.batcher,
        preprocess: st.preprocess,
        tokenizer: Arc::new(tokenizer),
        info: st.info,
    })
}

fn new_info(
    name: &str,
    role: &'static str,
    path: &std::path::Path,
    batching: &BatchingSpec,
    preprocess: &Preprocess,
) -> Arc<Mutex<ModelInfo>> {
    Arc::new(Mutex::new(ModelInfo {
        name: name.to_string(),
        role,
        path: path.display().to_string(),
        instances: Vec::new(),
        signature: None,
        batching: batching.clone(),
        max_batch_size: batching.max_batch_size,
        batch_cap: batching.max_batch_size,
        batch_curve: Vec::new(),
        preprocess: format!(
            "{:?}, {:?}, {:?}",
            preprocess.rule(),
            preprocess.filter(),
            preprocess.normalize()
        ),
    }))
}

/// Measures the lane's throughput curve and caps its batches when its manifest asks
/// (`batching.learn_cap`), recording the curve and the cap in its `/info` entry.
async fn learn<I, O>(
    batcher: &Batcher<I, O>,
    info: &Mutex<ModelInfo>,
    sample: impl Fn() -> I,
) -> Result<(), ModelError>
where
    I: crate::batcher::Batchable + Send + 'static,
    O: Send + 'static,
{
    if !info
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .batching
        .learn_cap
    {
        return Ok(());
    }
    let started = Instant::now();
    let curve = batcher
        .learn_cap(sample, &LearnBudget::default())
        .await
        .map_err(|source| ModelError::WarmUp {
            model: batcher.name().to_string(),
            source,
        })?;
    let cap = batcher.batch_cap();
    tracing::info!(model = %batcher.name(), cap, seconds = started.elapsed().as_secs_f64(), curve = ?curve, "learned the batch cap");
    let mut info = info.lock().unwrap_or_else(PoisonError::into_inner);
    info.batch_cap = cap;
    info.batch_curve = curve;
    Ok(())
}

/// The detector's warm-up item maker: a blank 64x64 image with one prompt.
fn detector_sample(d: &DetectorLane) -> Result<impl Fn() -> DetectorItem + '_, ModelError> {
    let plan = d.preprocess.plan(64, 64);
    let image = Arc::new(blank(plan.out_h, plan.out_w));
    let warm = match &d.vocabulary {
        Vocabulary::Captions(_) => "warm up",
        Vocabulary::Classes(c) => c.first().map_or("", String::as_str),
    };
    let prompt = d.prompt(&[warm]).map_err(|e| ModelError::Load {
        model: d.batcher.name().to_string(),
        message: e.to_string(),
    })?;
    Ok(move || d.item(image.clone(), &prompt, (64, 64), ShapeRule::Pad))
}

/// The preference model's warm-up item maker: a blank image with a short prompt.
fn preference_sample(p: &PreferenceLane) -> Result<impl Fn() -> PreferenceItem, ModelError> {
    let plan = p.preprocess.plan(256, 256);
    let input_ids: Arc<[i64]> = p
        .tokenizer
        .encode_truncated("warm up")
        .map_err(|e| ModelError::Load {
            model: p.batcher.name().to_string(),
            message: e.to_string(),
        })?
        .into();
    Ok(move || PreferenceItem {
        image: blank(plan.out_h, plan.out_w),
        input_ids: input_ids.clone(),
    })
}

fn blank(h: u32, w: u32) -> PooledTensor {
    let (h, w) = (h as usize, w as usize);
    PooledTensor::unpooled([3, h, w], vec![0.0; 3 * h * w])
}

async fn await_one<I: crate::batcher::Batchable + Send + 'static, O: Send + 'static>(
    batcher: &Batcher<I, O>,
    item: I,
    opts: SubmitOptions,
) -> Result<(), ModelError> {
    let warm = |source| ModelError::WarmUp {
        model: batcher.name().to_string(),
        source,
    };
    let mut tickets = batcher.submit(vec![item], opts).map_err(warm)?;
    let ticket = tickets.pop().ok_or_else(|| {
        warm(BatchError::ShuttingDown {
            model: batcher.name().to_string(),
        })
    })?;
    match ticket.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(warm(e)),
        Err(_) => Err(warm(BatchError::ShuttingDown {
            model: batcher.name().to_string(),
        })),
    }
}
