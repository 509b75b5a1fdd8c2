//! Where an item's aesthetic score comes from: the preference model (image + prompt), the
//! in-process image scorer, or the remote scorer, in that order of preference.

use super::{ItemMeta, RewardError, RewardServices};
use crate::batcher::{await_all, Batcher, SubmitOptions};
use crate::imaging;
use crate::reward::aesthetic::remote_scores;

/// One item's raw aesthetic score (or why it has none) and where it came from.
pub(super) type AestheticScore = (Result<f64, String>, &'static str);

/// Raw aesthetic scores of every item: the preference model (image + prompt) when the
/// manifest has one, else the image scorer, else the remote scorer. The outer error fails the
/// request (an in-process lane); the inner one is the remote scorer's component error.
pub(super) async fn aesthetic_all(
    svc: &RewardServices,
    meta: &[ItemMeta],
    submit: SubmitOptions,
) -> Result<Result<Vec<AestheticScore>, String>, RewardError> {
    let models = &svc.sc.models;
    if let Some(lane) = models.preference.as_ref() {
        return Ok(Ok(preference_scores(svc, lane, meta, submit).await?));
    }
    if let Some(lane) = models.aesthetic.as_ref() {
        return Ok(Ok(image_scores(svc, lane, meta, submit).await?));
    }
    Ok(remote(svc, meta).await)
}

/// The preference model's score of each image against its prompt (PickScore-like).
async fn preference_scores(
    svc: &RewardServices,
    lane: &crate::models::PreferenceLane,
    meta: &[ItemMeta],
    submit: SubmitOptions,
) -> Result<Vec<AestheticScore>, RewardError> {
    let (pre, tok, pool) = (
        lane.preprocess.clone(),
        lane.tokenizer.clone(),
        svc.sc.tensors.clone(),
    );
    let work = meta
        .iter()
        .map(|m| (m.image.clone(), m.prompt.clone()))
        .collect();
    let scores = run_on_lane(svc, &lane.batcher, work, submit, move |(img, prompt)| {
        Ok(crate::models::PreferenceItem {
            image: imaging::to_tensor(&img.rgb, &pre, &pool).map_err(|e| e.to_string())?,
            input_ids: tok
                .encode_truncated(&prompt)
                .map_err(|e| e.to_string())?
                .into(),
        })
    })
    .await?;
    Ok(scores
        .into_iter()
        .map(|v| (v.map(f64::from).map_err(|e| e.to_string()), "preference"))
        .collect())
}

/// The in-process image scorer's score of each image (its first output).
async fn image_scores(
    svc: &RewardServices,
    lane: &crate::models::ImageLane,
    meta: &[ItemMeta],
    submit: SubmitOptions,
) -> Result<Vec<AestheticScore>, RewardError> {
    let (pre, pool) = (lane.preprocess.clone(), svc.sc.tensors.clone());
    let work = meta.iter().map(|m| m.image.clone()).collect();
    let outputs = run_on_lane(svc, &lane.batcher, work, submit, move |img| {
        imaging::to_tensor(&img.rgb, &pre, &pool).map_err(|e| e.to_string())
    })
    .await?;
    Ok(outputs
        .into_iter()
        .map(|o| {
            let score = o.map(|v| f64::from(v[0])).map_err(|e| e.to_string());
            (score, "model")
        })
        .collect())
}

/// The remote scorer's score of each image against its prompt; its failure (or its absence)
/// is the component's error for every item.
async fn remote(svc: &RewardServices, meta: &[ItemMeta]) -> Result<Vec<AestheticScore>, String> {
    let Some((remote, url)) = svc.aesthetic_remote.as_ref() else {
        return Err("no aesthetic scorer is configured".to_string());
    };
    let prompts: Vec<&str> = meta.iter().map(|m| m.prompt.as_str()).collect();
    let images: Vec<&str> = meta
        .iter()
        .map(|m| m.image_b64.as_deref().unwrap_or(""))
        .collect();
    let scores = remote_scores(remote, url, &prompts, &images)
        .await
        .map_err(|e| e.to_string())?;
    let missing = || "the scorer returned no score for this image".to_string();
    Ok(scores
        .into_iter()
        .map(|s| (s.ok_or_else(missing), "remote"))
        .collect())
}

/// Builds one model input per work item on the CPU pool, then runs them all through `lane`
/// under the request's deadline.
async fn run_on_lane<T, I, O>(
    svc: &RewardServices,
    lane: &Batcher<I, O>,
    work: Vec<T>,
    submit: SubmitOptions,
    build: impl Fn(T) -> Result<I, String> + Send + Sync + 'static,
) -> Result<Vec<O>, RewardError>
where
    T: Send + 'static,
    I: crate::batcher::Batchable + Send + 'static,
    O: Send + 'static,
{
    let cpu = svc.sc.cpu.clone();
    let inputs = svc
        .sc
        .cpu
        .run(move || {
            cpu.map(work, build)
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
        .map_err(RewardError::Preprocess)?;
    let tickets = lane.submit(inputs, submit)?;
    let (outputs, _) = await_all(tickets, submit.deadline).await?;
    Ok(outputs)
}
