//! The copy-paste guard on a generated evaluation set: detection rate on references pasted
//! into generated images (exactly, scaled, shifted, flipped, cut out, JPEG-recompressed,
//! partly occluded) and false-positive rate on the same objects drawn anew (other pose,
//! colour or texture) and on unrelated objects. Crops are the objects' boxes with the
//! jitter of a detector. The table is written to target/test-artifacts/copy-paste-eval.md
//! and quoted in the README.

mod copy_paste;

use copy_paste::scenes::{background, detector_crop, jpeg, paste, Object, Rng, Texture};
use image::RgbImage;
use psr_reward::reward::copy_paste::{score, CopyPasteConfig, Thumbnail};

/// Objects in the set; each yields one scene per condition.
const OBJECTS: u64 = 40;
/// Detector box error per edge, as a share of the box side.
const JITTER: f64 = 0.03;

/// How the generated image was made from the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Condition {
    Exact,
    ScaledDown,
    ScaledUp,
    Shifted,
    Flipped,
    CutOut,
    Jpeg,
    Occluded,
    FlippedScaledJpeg,
    RedrawnPose,
    RedrawnColour,
    RedrawnTexture,
    Unrelated,
}

impl Condition {
    const ALL: [Condition; 13] = [
        Condition::Exact,
        Condition::ScaledDown,
        Condition::ScaledUp,
        Condition::Shifted,
        Condition::Flipped,
        Condition::CutOut,
        Condition::Jpeg,
        Condition::Occluded,
        Condition::FlippedScaledJpeg,
        Condition::RedrawnPose,
        Condition::RedrawnColour,
        Condition::RedrawnTexture,
        Condition::Unrelated,
    ];

    fn is_paste(self) -> bool {
        !matches!(
            self,
            Condition::RedrawnPose
                | Condition::RedrawnColour
                | Condition::RedrawnTexture
                | Condition::Unrelated
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Condition::Exact => "reference crop pasted as is",
            Condition::ScaledDown => "pasted at 0.5-0.7x",
            Condition::ScaledUp => "pasted at 1.4-1.8x",
            Condition::Shifted => "pasted, box off by up to 8 % per edge",
            Condition::Flipped => "pasted mirrored",
            Condition::CutOut => "object cut out, 0.8-1.25x, new backdrop",
            Condition::Jpeg => "pasted, image JPEG q 60-75",
            Condition::Occluded => "pasted, 20-25 % covered by another object",
            Condition::FlippedScaledJpeg => "mirrored, 0.75x, JPEG q 70",
            Condition::RedrawnPose => "same object, turned 25-45 deg",
            Condition::RedrawnColour => "same object, other colours",
            Condition::RedrawnTexture => "same object, other texture",
            Condition::Unrelated => "another object",
        }
    }
}

/// A reference image of `object` and its detector crop.
fn reference(object: &Object, rng: &mut Rng) -> RgbImage {
    let mut img = background(rng, 224, 224);
    let size = rng.range(110.0, 150.0);
    let b = object.draw(&mut img, 112.0, 112.0, size);
    detector_crop(&img, b, JITTER, rng)
}

fn scaled(img: &RgbImage, factor: f64) -> RgbImage {
    let w = ((f64::from(img.width()) * factor).round() as u32).max(1);
    let h = ((f64::from(img.height()) * factor).round() as u32).max(1);
    image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle)
}

/// Pastes `patch` somewhere in a new 384x384 scene; returns the scene and the patch's box.
fn paste_scene(patch: &RgbImage, rng: &mut Rng) -> (RgbImage, [u32; 4]) {
    let mut img = background(rng, 384, 384);
    let x = rng.range(0.0, f64::from(384 - patch.width().min(383))) as u32;
    let y = rng.range(0.0, f64::from(384 - patch.height().min(383))) as u32;
    let b = paste(&mut img, patch, x, y);
    (img, b)
}

/// Draws `object` at a random place of a new scene.
fn drawn_scene(object: &Object, rng: &mut Rng) -> (RgbImage, [u32; 4]) {
    let mut img = background(rng, 384, 384);
    let size = rng.range(110.0, 170.0);
    let (cx, cy) = (rng.range(100.0, 284.0), rng.range(100.0, 284.0));
    let b = object.draw(&mut img, cx, cy, size);
    (img, b)
}

/// The generated crop for `condition` of the reference crop `r` of `object`.
fn generated(condition: Condition, object: &Object, r: &RgbImage, rng: &mut Rng) -> RgbImage {
    let crop = |(img, b): (RgbImage, [u32; 4]), jitter: f64, rng: &mut Rng| {
        detector_crop(&img, b, jitter, rng)
    };
    match condition {
        Condition::Exact => crop(paste_scene(r, rng), JITTER, rng),
        Condition::ScaledDown => {
            let f = rng.range(0.5, 0.7);
            crop(paste_scene(&scaled(r, f), rng), JITTER, rng)
        }
        Condition::ScaledUp => {
            let f = rng.range(1.4, 1.8);
            crop(paste_scene(&scaled(r, f), rng), JITTER, rng)
        }
        Condition::Shifted => crop(paste_scene(r, rng), 0.08, rng),
        Condition::Flipped => {
            let flipped = image::imageops::flip_horizontal(r);
            crop(paste_scene(&flipped, rng), JITTER, rng)
        }
        Condition::CutOut => {
            let mut img = background(rng, 384, 384);
            let size = rng.range(0.8, 1.25) * 130.0;
            let b = object.draw(&mut img, 192.0, 192.0, size);
            crop((img, b), JITTER, rng)
        }
        Condition::Jpeg => {
            let (img, b) = paste_scene(r, rng);
            let q = rng.range(60.0, 75.0) as u8;
            crop((jpeg(&img, q), b), JITTER, rng)
        }
        Condition::Occluded => {
            let (mut img, b) = paste_scene(r, rng);
            // An unrelated object over one corner: its size covers a fifth to a quarter.
            let other = Object::random(rng);
            let side = f64::from((b[2] - b[0]).min(b[3] - b[1]));
            let size = side * rng.range(0.5, 0.6);
            let corner = rng.pick(4);
            let cx = if corner.is_multiple_of(2) {
                b[0] as f64
            } else {
                b[2] as f64
            };
            let cy = if corner < 2 { b[1] as f64 } else { b[3] as f64 };
            let dx = if corner.is_multiple_of(2) {
                size * 0.35
            } else {
                -size * 0.35
            };
            let dy = if corner < 2 {
                size * 0.35
            } else {
                -size * 0.35
            };
            other.draw(&mut img, cx + dx, cy + dy, size);
            crop((img, b), JITTER, rng)
        }
        Condition::FlippedScaledJpeg => {
            let patch = image::imageops::flip_horizontal(&scaled(r, 0.75));
            let (img, b) = paste_scene(&patch, rng);
            crop((jpeg(&img, 70), b), JITTER, rng)
        }
        Condition::RedrawnPose => {
            let turn =
                rng.range(25f64, 45.0).to_radians() * if rng.pick(2) == 0 { 1.0 } else { -1.0 };
            let posed = Object {
                angle: object.angle + turn,
                ..*object
            };
            crop(drawn_scene(&posed, rng), JITTER, rng)
        }
        Condition::RedrawnColour => {
            let other = Object::random(rng);
            let recoloured = Object {
                base: other.base,
                accent: other.accent,
                ..*object
            };
            crop(drawn_scene(&recoloured, rng), JITTER, rng)
        }
        Condition::RedrawnTexture => {
            let retextured = Object {
                texture: Texture::random(rng),
                ..*object
            };
            crop(drawn_scene(&retextured, rng), JITTER, rng)
        }
        Condition::Unrelated => crop(drawn_scene(&Object::random(rng), rng), JITTER, rng),
    }
}

/// Per condition: scenes, suspected, unscored, and the scores.
#[derive(Default)]
struct Tally {
    scenes: usize,
    suspected: usize,
    unscored: usize,
    scores: Vec<f64>,
}

fn evaluate(threshold: f64) -> Vec<(Condition, Tally)> {
    let mut out: Vec<(Condition, Tally)> = Condition::ALL
        .iter()
        .map(|&c| (c, Tally::default()))
        .collect();
    for seed in 0..OBJECTS {
        let mut rng = Rng::new(0x5eed_0000 + seed);
        let object = Object {
            angle: rng.range(-0.4, 0.4),
            ..Object::random(&mut rng)
        };
        let r = reference(&object, &mut rng);
        let rt = Thumbnail::of(&r).unwrap();
        for (condition, tally) in &mut out {
            let g = generated(*condition, &object, &r, &mut rng);
            let s = score(&Thumbnail::of(&g).unwrap(), &rt);
            tally.scenes += 1;
            match s {
                None => tally.unscored += 1,
                Some(s) => {
                    tally.scores.push(s);
                    tally.suspected += usize::from(s >= threshold);
                }
            }
        }
    }
    out
}

fn report(rows: &[(Condition, Tally)], threshold: f64) -> String {
    let mut md = format!(
        "Copy-paste guard, threshold {threshold}, {OBJECTS} objects per condition, detector jitter {} %\n\n\
         | condition | kind | scenes | suspected | rate | min score | median | max score |\n|---|---|---|---|---|---|---|---|\n",
        JITTER * 100.0
    );
    for (c, t) in rows {
        let mut s = t.scores.clone();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| {
            s.get(((s.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        md += &format!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            c.describe(),
            if c.is_paste() { "paste" } else { "honest" },
            t.scenes,
            t.suspected,
            t.suspected as f64 / t.scenes as f64,
            at(0.0),
            at(0.5),
            at(1.0),
        );
    }
    md
}

fn rate(rows: &[(Condition, Tally)], paste: bool) -> f64 {
    let (hit, all) = rows
        .iter()
        .filter(|(c, _)| c.is_paste() == paste)
        .fold((0, 0), |(h, a), (_, t)| (h + t.suspected, a + t.scenes));
    hit as f64 / all as f64
}

#[test]
fn the_guard_catches_pastes_and_spares_new_renderings_on_the_generated_set() {
    let threshold = CopyPasteConfig::default().threshold;
    let rows = evaluate(threshold);
    let detection = rate(&rows, true);
    let false_positives = rate(&rows, false);
    let mut md = report(&rows, threshold);
    md += &format!("\nDetection rate {detection:.3}, false-positive rate {false_positives:.3}\n");
    println!("{md}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("copy-paste-eval.md"), &md).unwrap();
    assert!(detection >= 0.97, "detection rate {detection}\n{md}");
    assert!(
        false_positives <= 0.03,
        "false-positive rate {false_positives}\n{md}"
    );
    for (c, t) in &rows {
        let r = t.suspected as f64 / t.scenes as f64;
        if c.is_paste() {
            assert!(r >= 0.9, "{c:?}: detection {r}\n{md}");
        } else {
            assert!(r <= 0.05, "{c:?}: false positives {r}\n{md}");
        }
    }
}
