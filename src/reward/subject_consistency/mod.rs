//! The PSR subject-consistency reward: for every subject, detect its category in the
//! generated image and in its reference, crop both, embed the crops, and take the cosine
//! similarity; the item's score is the mean over subjects (psr-reference.md, eval scripts
//! `eval-{2,3,4}-subject-sc.py`).
//!
//! All detections of a request leave through the detector lane in one submission, then all
//! crops through the embedder lane, so items and subjects batch with each other and with other
//! callers. References come from the [`ReferenceCache`] when seen before.

mod detect;
mod types;
mod work;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::assignment::{best_assignment, MAX_CANDIDATES};
use super::cache::{CacheKey, CachedReference, InFlight, Lookup};
use super::copy_paste;
use super::crop;
use super::{AlphaRule, Matching, ScOptions};
use crate::batcher::SubmitOptions;
use crate::imaging::DecodedImage;

use detect::{DetectionPlan, Detections};
pub use types::{
    ItemInput, ReferenceInput, ScError, ScItem, ScServices, StageTiming, SubjectInput, SubjectScore,
};
use work::{cosine, embed_all, Choice, EmbedJobs, Embedded, Group, Img, Pixels, RefState};

/// Computes the subject-consistency component of every item: per item its result, or why a
/// model output it depends on was rejected.
pub async fn score_items(
    svc: &ScServices,
    items: Vec<ItemInput>,
    opts: ScOptions,
    submit: SubmitOptions,
) -> Result<(Vec<Result<ScItem, String>>, StageTiming), ScError> {
    let detector = svc
        .models
        .detector
        .as_ref()
        .ok_or(ScError::NotServed("detector"))?;
    let embedder = svc
        .models
        .embedder
        .as_ref()
        .ok_or(ScError::NotServed("embedder"))?;
    let rule = opts.crop_rule();
    let mut timing = StageTiming::default();

    let claims = claim_references(svc, &items, opts, submit.deadline).await?;
    // `_leads` wakes the requests waiting for this one's new references when it drops, at
    // the end of this function, after they are cached (or on failure).
    let Resolved {
        images,
        generated,
        refs,
        pending,
        leads: _leads,
    } = resolve(&items, opts, claims)?;

    // Stage 1: detection, every pass of the request in one submission.
    let started = Instant::now();
    let joint = DetectionPlan::joint(opts, detector);
    let DetectionPlan {
        passes,
        generated: gen_jobs,
        references: ref_jobs,
    } = DetectionPlan::new(&items, &images, &generated, &pending, joint);
    let detections = Detections::run(
        svc,
        detector,
        &images,
        passes,
        &items,
        (opts, submit),
        &mut timing,
    )
    .await?;
    let bad_jobs = &detections.rejected;
    let detections_of = |job: usize, name: &str| detections.of(job, name);
    timing.detection = started.elapsed();

    // Stage 2: choose crops and embed them.
    let started = Instant::now();
    let mut embeds = EmbedJobs::default();
    let ref_choices: Vec<Choice> = pending
        .iter()
        .enumerate()
        .map(|(p, (key, img))| match ref_jobs[p] {
            None => embeds.whole_non_rgb(&images, *img),
            Some(job) => embeds.crop(
                &images,
                *img,
                rule,
                detections_of(job, &key.category).first(),
            ),
        })
        .collect();
    // Per item and subject: a fixed choice, or candidates decided after embedding.
    let mut gen_choices: Vec<Vec<Option<Choice>>> = Vec::with_capacity(items.len());
    let mut groups: Vec<Group> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let img = generated[i];
        let mut choices = vec![None; item.subjects.len()];
        if !images[img].detectable {
            for c in choices.iter_mut() {
                *c = Some(embeds.whole_non_rgb(&images, img));
            }
            gen_choices.push(choices);
            continue;
        }
        match opts.matching {
            Matching::Psr => {
                // eval-2-subject-sc.py: two subjects of one category take kept boxes 0 and 1.
                let same_pair =
                    item.subjects.len() == 2 && item.subjects[0].name == item.subjects[1].name;
                for (s, subject) in item.subjects.iter().enumerate() {
                    let dets = detections_of(gen_jobs[i][&subject.name], &subject.name);
                    let idx = if same_pair { s } else { 0 };
                    choices[s] = Some(embeds.crop(&images, img, rule, dets.get(idx)));
                }
            }
            Matching::Assignment => {
                let mut seen: Vec<&str> = Vec::new();
                for subject in &item.subjects {
                    if seen.contains(&subject.name.as_str()) {
                        continue;
                    }
                    seen.push(&subject.name);
                    let members: Vec<usize> = (0..item.subjects.len())
                        .filter(|&s| item.subjects[s].name == subject.name)
                        .collect();
                    let dets = detections_of(gen_jobs[i][&subject.name], &subject.name);
                    let candidates: Vec<Choice> = dets
                        .iter()
                        .take(MAX_CANDIDATES)
                        .map(|d| embeds.crop(&images, img, rule, Some(d)))
                        .filter(|c| c.fallback.is_none())
                        .collect();
                    let whole = (members.len() > candidates.len())
                        .then(|| embeds.crop(&images, img, rule, None));
                    groups.push(Group {
                        item: i,
                        members,
                        candidates,
                        whole,
                    });
                }
            }
        }
        gen_choices.push(choices);
    }
    let Embedded {
        outputs: embedded,
        thumbnails,
    } = embed_all(svc, embedder, &images, &embeds.keys, submit, &mut timing).await?;
    timing.embedding = started.elapsed();
    // Rejected embeddings stay out of every similarity (empty: cosine 0) and fail their items.
    let embeddings: Vec<&[f32]> = embedded
        .iter()
        .map(|e| e.as_deref().unwrap_or(&[]))
        .collect();
    let bad_embedding = |k: usize| embedded[k].as_ref().err().map(ToString::to_string);

    // References: cached or just computed (and now cached).
    let ref_problems: Vec<Option<String>> = ref_choices
        .iter()
        .zip(&ref_jobs)
        .map(|(c, job)| {
            job.and_then(|j| bad_jobs[j].clone())
                .or_else(|| bad_embedding(c.embed))
        })
        .collect();
    let pending_refs: Vec<CachedReference> = pending
        .iter()
        .zip(&ref_choices)
        .zip(&ref_problems)
        .map(|(((key, _), c), problem)| {
            let entry = CachedReference {
                embedding: embeddings[c.embed].to_vec().into(),
                detected: c.detected,
                bbox: c.bbox,
                fallback: c.fallback,
                fallback_mode: c.fallback_mode,
                thumbnail: thumbnails[c.embed].clone(),
            };
            // Only trustworthy references are remembered.
            if problem.is_none() {
                svc.cache.insert(key.clone(), entry.clone());
            }
            entry
        })
        .collect();
    let reference = |i: usize, s: usize| -> &CachedReference {
        match &refs[i][s] {
            RefState::Cached(c) => c,
            RefState::Pending(p) => &pending_refs[*p],
        }
    };
    for Group {
        item: i,
        members,
        candidates,
        whole,
    } in groups
    {
        let sim: Vec<Vec<f64>> = members
            .iter()
            .map(|&s| {
                candidates
                    .iter()
                    .map(|c| cosine(embeddings[c.embed], &reference(i, s).embedding))
                    .collect()
            })
            .collect();
        for (k, pick) in best_assignment(&sim).into_iter().enumerate() {
            gen_choices[i][members[k]] = pick.map(|b| candidates[b]).or(whole);
        }
    }

    // Why an item cannot be scored: a rejected output among its detections, its references'
    // detections and embeddings, or its chosen crops' embeddings.
    let item_problem = |i: usize, item: &ItemInput| -> Option<String> {
        let gen = gen_jobs[i].values().find_map(|&j| bad_jobs[j].clone());
        let refs = (0..item.subjects.len()).find_map(|s| match &refs[i][s] {
            RefState::Pending(p) => ref_problems[*p].clone(),
            RefState::Cached(_) => None,
        });
        let crops = gen_choices[i]
            .iter()
            .flatten()
            .find_map(|c| bad_embedding(c.embed));
        gen.or(refs).or(crops)
    };
    let mut results = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(problem) = item_problem(i, item) {
            results.push(Err(problem));
            continue;
        }
        let first_boxes = item
            .subjects
            .iter()
            .map(|subject| {
                let job = *gen_jobs[i].get(&subject.name)?;
                detections_of(job, &subject.name)
                    .first()
                    .map(|d| crop::truncate_box(d.bbox))
            })
            .collect();
        let mut subjects = Vec::with_capacity(item.subjects.len());
        for (s, subject) in item.subjects.iter().enumerate() {
            let r = reference(i, s);
            let g = gen_choices[i][s]
                .ok_or_else(|| ScError::Preprocess("subject without a crop".into()))?;
            subjects.push(SubjectScore {
                name: subject.name.clone(),
                similarity: cosine(embeddings[g.embed], &r.embedding),
                detected: g.detected,
                bbox: g.bbox,
                fallback: g.fallback,
                fallback_mode: g.fallback_mode,
                reference_detected: r.detected,
                reference_box: r.bbox,
                reference_fallback: r.fallback,
                reference_fallback_mode: r.fallback_mode,
                copy_paste: copy_paste::CopyPaste {
                    score: thumbnails[g.embed]
                        .as_deref()
                        .zip(r.thumbnail.as_deref())
                        .and_then(|(g, r)| copy_paste::score(g, r)),
                    // Decided by the reward engine under the request's policy.
                    suspected: false,
                },
                reference: match &subject.reference {
                    ReferenceInput::Image(d) => d.content_hash.clone(),
                    ReferenceInput::Cached(h) => h.clone(),
                },
            });
        }
        let score =
            subjects.iter().map(|s| s.similarity).sum::<f64>() / subjects.len().max(1) as f64;
        results.push(Ok(ScItem {
            score,
            subjects,
            first_boxes,
        }));
    }
    Ok((results, timing))
}

/// A reference key's state for this request after the single-flight lookup.
enum Claim {
    Hit(CachedReference),
    Lead(InFlight),
}

/// The cache key of a subject's reference under `opts`.
fn reference_key(subject: &SubjectInput, opts: ScOptions) -> CacheKey {
    CacheKey {
        hash: match &subject.reference {
            ReferenceInput::Image(d) => d.content_hash.clone(),
            ReferenceInput::Cached(h) => h.clone(),
        },
        category: subject.name.clone(),
        variant: opts.reference_variant(),
    }
}

/// Looks every distinct reference key up once: a hit, or this request computes it. A key
/// another request is computing now is waited for (until the deadline) and looked up again,
/// so concurrent misses of one new reference are computed once.
async fn claim_references(
    svc: &ScServices,
    items: &[ItemInput],
    opts: ScOptions,
    deadline: Instant,
) -> Result<HashMap<CacheKey, Claim>, ScError> {
    let mut claims = HashMap::new();
    for key in items
        .iter()
        .flat_map(|item| &item.subjects)
        .map(|subject| reference_key(subject, opts))
    {
        if claims.contains_key(&key) {
            continue;
        }
        let claim = loop {
            match svc.cache.lookup(&key) {
                Lookup::Hit(hit) => break Claim::Hit(hit),
                Lookup::Lead(lead) => break Claim::Lead(lead),
                Lookup::Wait(mut done) => {
                    // Err: the computing request finished (its sender dropped); look again.
                    let wait = done.changed();
                    if tokio::time::timeout_at(deadline.into(), wait)
                        .await
                        .is_err()
                    {
                        return Err(ScError::Timeout);
                    }
                }
            }
        };
        claims.insert(key, claim);
    }
    Ok(claims)
}

/// The request's images as the models see them, and its references resolved against the cache.
struct Resolved {
    images: Vec<Img>,
    /// Per item, its generated image's index in `images`.
    generated: Vec<usize>,
    /// Per item and subject, the reference: cached, or one of `pending`.
    refs: Vec<Vec<RefState>>,
    /// References to detect and embed now (deduplicated by cache key), with their image.
    pending: Vec<(CacheKey, usize)>,
    /// The single-flight duties of `pending`.
    leads: Vec<InFlight>,
}

/// Builds [`Resolved`] from the claims; a `{"ref": hash}` the cache no longer holds is an
/// error.
fn resolve(
    items: &[ItemInput],
    opts: ScOptions,
    mut claims: HashMap<CacheKey, Claim>,
) -> Result<Resolved, ScError> {
    let composite = opts.alpha == AlphaRule::CompositeWhite;
    let mut images: Vec<Img> = Vec::new();
    let mut add_image = |d: &Arc<DecodedImage>| {
        let pixels = match (composite, d.alpha.is_some()) {
            (true, true) => Pixels::Composited(Arc::new(d.composited_on_white())),
            (true, false) => Pixels::Decoded(d.clone()),
            // The scripts' rule: the image as Pillow opened it, detected only in mode RGB.
            (false, _) => Pixels::AsOpened(d.clone()),
        };
        images.push(Img {
            pixels,
            detectable: composite || d.is_pillow_rgb(),
            mode: d.mode,
        });
        images.len() - 1
    };
    let mut generated = Vec::with_capacity(items.len());
    let mut refs: Vec<Vec<RefState>> = Vec::with_capacity(items.len());
    let mut pending: Vec<(CacheKey, usize)> = Vec::new();
    let mut pending_index: HashMap<CacheKey, usize> = HashMap::new();
    let mut leads = Vec::new();
    for (i, item) in items.iter().enumerate() {
        generated.push(add_image(&item.image));
        let mut states = Vec::with_capacity(item.subjects.len());
        for (s, subject) in item.subjects.iter().enumerate() {
            let key = reference_key(subject, opts);
            match claims.remove(&key) {
                Some(Claim::Hit(hit)) => {
                    // Later subjects with the same key see the hit too.
                    claims.insert(key, Claim::Hit(hit.clone()));
                    states.push(RefState::Cached(hit));
                    continue;
                }
                Some(Claim::Lead(lead)) => leads.push(lead),
                // Claimed by an earlier subject of this request: pending already.
                None => {}
            }
            let ReferenceInput::Image(decoded) = &subject.reference else {
                return Err(ScError::UnknownReference {
                    item: i,
                    subject: s,
                    hash: key.hash,
                });
            };
            let p = match pending_index.get(&key) {
                Some(&p) => p,
                None => {
                    pending.push((key.clone(), add_image(decoded)));
                    pending_index.insert(key, pending.len() - 1);
                    pending.len() - 1
                }
            };
            states.push(RefState::Pending(p));
        }
        refs.push(states);
    }
    Ok(Resolved {
        images,
        generated,
        refs,
        pending,
        leads,
    })
}
