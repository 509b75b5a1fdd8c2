//! The reference pipelines' preprocessing, reproduced exactly.
//!
//! - Embedders (DINO): torchvision `Resize(256)` (short side to 256, long side floored),
//!   `CenterCrop(224)` (offset `int(round((H - 224) / 2))`, Python's round-half-even),
//!   `ToTensor`, `Normalize(mean, std)`. Resampling is Pillow's (bicubic, antialiased).
//! - Grounding DINO: `RandomResize([800], max_size=1333)` of the IDEA code (short side 800 unless
//!   the long side would pass 1333, then short = `round(1333 * short / long)`), Pillow bilinear.
//!
//! Facts from psr-reference.md (PSR eval scripts, GroundingDINO `transforms.py`, torchvision).

use super::pillow::{self, ModePixels, ModeScratch};
use super::resize::{Filter, Geometry, ResizeError, Resizer, Window};
use super::tensor::{PooledTensor, TensorPool};

/// Per-channel normalisation `(x / 255 - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// ImageNet statistics (DINO, Grounding DINO).
pub const IMAGENET: Normalize = Normalize {
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
};

/// Plain `x / 255` (YOLO exports).
pub const UNIT: Normalize = Normalize {
    mean: [0.0; 3],
    std: [1.0; 3],
};

/// OpenAI CLIP statistics (CLIP-based aesthetic and preference heads).
pub const CLIP: Normalize = Normalize {
    mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
    std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
};

/// How an image is brought to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResizeRule {
    /// Short side to `resize` (long side floored), then a centred `crop`×`crop` window.
    ShortSideCenterCrop { resize: u32, crop: u32 },
    /// Short side to `short` unless the long side would exceed `max_long` (detectors).
    ShortSideMaxLong { short: u32, max_long: u32 },
    /// Straight to `width`×`height`, aspect ratio not kept (deep_sort's MobileNetV2 embedder).
    Squash { width: u32, height: u32 },
    /// Ultralytics `LetterBox`: scale to fit `size`×`size` keeping the aspect ratio, centre,
    /// pad with grey `fill` (114).
    Letterbox { size: u32, fill: u8 },
}

/// A complete preprocessing recipe with its normalisation table.
#[derive(Debug, Clone)]
pub struct Preprocess {
    rule: ResizeRule,
    filter: Filter,
    normalize: Normalize,
    /// `lut[c][v]` = normalised value of byte `v` in channel `c`.
    lut: Box<[[f32; 256]; 3]>,
}

/// Where the resized image lands and which window of it becomes the tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub resized_w: u32,
    pub resized_h: u32,
    pub crop_x: u32,
    pub crop_y: u32,
    pub out_w: u32,
    pub out_h: u32,
    /// Where the resized image sits in the output when it is padded (letterbox).
    pub pad_x: u32,
    pub pad_y: u32,
    /// Padding byte value.
    pub fill: u8,
}

impl Plan {
    fn resize_crop(
        resized_w: u32,
        resized_h: u32,
        crop_x: u32,
        crop_y: u32,
        out_w: u32,
        out_h: u32,
    ) -> Self {
        Self {
            resized_w,
            resized_h,
            crop_x,
            crop_y,
            out_w,
            out_h,
            pad_x: 0,
            pad_y: 0,
            fill: 0,
        }
    }

    /// The part of the resized image that reaches the tensor (all of it unless cropped).
    pub fn kept_window(&self) -> Window {
        Window {
            x: self.crop_x,
            y: self.crop_y,
            w: self
                .out_w
                .min(self.resized_w.saturating_sub(self.crop_x))
                .max(1),
            h: self
                .out_h
                .min(self.resized_h.saturating_sub(self.crop_y))
                .max(1),
        }
    }

    /// Scale from the source to the resized image (letterbox gain).
    pub fn gain(&self, src_w: u32) -> f32 {
        self.resized_w as f32 / src_w.max(1) as f32
    }
}

impl Preprocess {
    /// Builds a recipe and precomputes its normalisation table.
    pub fn new(rule: ResizeRule, filter: Filter, normalize: Normalize) -> Self {
        let mut lut = Box::new([[0.0f32; 256]; 3]);
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, slot) in table.iter_mut().enumerate() {
                *slot = (v as f32 / 255.0 - normalize.mean[c]) / normalize.std[c];
            }
        }
        Self {
            rule,
            filter,
            normalize,
            lut,
        }
    }

    /// The resize rule.
    pub fn rule(&self) -> ResizeRule {
        self.rule
    }

    /// The normalisation.
    pub fn normalize(&self) -> Normalize {
        self.normalize
    }

    /// The resampling filter.
    pub fn filter(&self) -> Filter {
        self.filter
    }

    /// Output geometry for a `w`×`h` source.
    pub fn plan(&self, w: u32, h: u32) -> Plan {
        match self.rule {
            ResizeRule::ShortSideCenterCrop { resize, crop } => {
                let (rw, rh) = short_side(w, h, resize);
                Plan::resize_crop(
                    rw,
                    rh,
                    center_offset(rw, crop),
                    center_offset(rh, crop),
                    crop,
                    crop,
                )
            }
            ResizeRule::Squash { width, height } => {
                Plan::resize_crop(width, height, 0, 0, width, height)
            }
            ResizeRule::ShortSideMaxLong { short, max_long } => {
                let (rw, rh) = short_side_max_long(w, h, short, max_long);
                Plan::resize_crop(rw, rh, 0, 0, rw, rh)
            }
            ResizeRule::Letterbox { size, fill } => {
                // Ultralytics LetterBox(center=True): r = min(new/h, new/w), unpadded size
                // round(w*r) x round(h*r), top/left padding round(d/2 - 0.1).
                let r = (f64::from(size) / f64::from(h)).min(f64::from(size) / f64::from(w));
                let rw = ((f64::from(w) * r).round() as u32).clamp(1, size);
                let rh = ((f64::from(h) * r).round() as u32).clamp(1, size);
                let pad = |d: u32| (f64::from(size - d) / 2.0 - 0.1).round().max(0.0) as u32;
                Plan {
                    pad_x: pad(rw),
                    pad_y: pad(rh),
                    fill,
                    ..Plan::resize_crop(rw, rh, 0, 0, size, size)
                }
            }
        }
    }

    /// Resizes `src`, crops or pads, and normalises into a pooled `[3, H, W]` tensor.
    /// Only the window the tensor keeps is resampled, so a thin 1×8192 image costs a 224×224
    /// window, not the 256×2,097,152 resize it nominally asks for. `resizer` and `scratch`
    /// are per-thread reusable buffers.
    pub fn run(
        &self,
        src: &image::RgbImage,
        resizer: &mut Resizer,
        scratch: &mut Vec<u8>,
        pool: &TensorPool,
    ) -> Result<PooledTensor, ResizeError> {
        let plan = self.plan(src.width(), src.height());
        let window = plan.kept_window();
        scratch.clear();
        scratch.resize(window.w as usize * window.h as usize * 3, 0);
        resizer.resize_window(
            src.as_raw(),
            src.dimensions(),
            None,
            (plan.resized_w, plan.resized_h),
            window,
            scratch,
            self.filter,
        )?;
        Ok(self.normalize_window(scratch, window, &plan, pool))
    }

    /// [`Preprocess::run`] on an image in its own Pillow mode (`pixels`, `width`×`height`):
    /// the resize Pillow does in that mode (premultiplied for RGBA and LA, NEAREST for P and
    /// 1, in CMYK or 16 bits), the crop, then `convert("RGB")`, as the PSR scripts'
    /// transform sees an image it never converted. Only the kept window is resampled.
    pub fn run_in_mode(
        &self,
        pixels: ModePixels<'_>,
        (width, height): (u32, u32),
        resizer: &mut Resizer,
        scratch: (&mut ModeScratch, &mut Vec<u8>),
        pool: &TensorPool,
    ) -> Result<PooledTensor, ResizeError> {
        let (modes, rgb) = scratch;
        let plan = self.plan(width, height);
        let window = plan.kept_window();
        rgb.clear();
        rgb.resize(window.w as usize * window.h as usize * 3, 0);
        let geometry = Geometry {
            src: (width, height),
            area: None,
            dst: (plan.resized_w, plan.resized_h),
            window,
        };
        pillow::resize_to_rgb(resizer, pixels, geometry, self.filter, modes, rgb)?;
        Ok(self.normalize_window(rgb, window, &plan, pool))
    }

    /// Copies the kept window (RGB8, `window.w` pixels a row) into a planar normalised
    /// tensor, padding around it when the plan letterboxes.
    fn normalize_window(
        &self,
        rgb: &[u8],
        window: Window,
        plan: &Plan,
        pool: &TensorPool,
    ) -> PooledTensor {
        let (ow, oh) = (plan.out_w as usize, plan.out_h as usize);
        let (px, py) = (plan.pad_x as usize, plan.pad_y as usize);
        let (cw, ch) = (window.w as usize, window.h as usize);
        let fill = plan.fill as usize;
        pool.tensor([3, oh, ow], |data| {
            data.resize(3 * oh * ow, 0.0);
            let (r, rest) = data.split_at_mut(oh * ow);
            let (g, b) = rest.split_at_mut(oh * ow);
            if cw < ow || ch < oh {
                r.fill(self.lut[0][fill]);
                g.fill(self.lut[1][fill]);
                b.fill(self.lut[2][fill]);
            }
            for (y, row) in rgb.chunks_exact(cw * 3).take(ch).enumerate() {
                let out = (py + y) * ow + px;
                for (x, px) in row.chunks_exact(3).enumerate() {
                    r[out + x] = self.lut[0][px[0] as usize];
                    g[out + x] = self.lut[1][px[1] as usize];
                    b[out + x] = self.lut[2][px[2] as usize];
                }
            }
        })
    }
}

/// torchvision `Resize(size)` on a PIL image: the short side becomes `size`, the long side
/// `int(size * long / short)`.
fn short_side(w: u32, h: u32, size: u32) -> (u32, u32) {
    if w <= h {
        (size, scale_floor(size, h, w))
    } else {
        (scale_floor(size, w, h), size)
    }
}

/// GroundingDINO's `get_size_with_aspect_ratio(image_size, size, max_size)`.
fn short_side_max_long(w: u32, h: u32, size: u32, max_long: u32) -> (u32, u32) {
    let (min_side, max_side) = (f64::from(w.min(h)), f64::from(w.max(h)));
    let mut size = size;
    if max_side / min_side * f64::from(size) > f64::from(max_long) {
        // Python's round() rounds half to even.
        // At least one pixel: a strip beyond 2666:1 would round to 0, which Pillow refuses.
        size = ((f64::from(max_long) * min_side / max_side).round_ties_even() as u32).max(1);
    }
    if (w <= h && w == size) || (h <= w && h == size) {
        return (w, h);
    }
    if w < h {
        (size, scale_floor(size, h, w))
    } else {
        (scale_floor(size, w, h), size)
    }
}

/// `int(size * num / den)` as Python computes it (float division, then truncation).
fn scale_floor(size: u32, num: u32, den: u32) -> u32 {
    (f64::from(size) * f64::from(num) / f64::from(den)) as u32
}

/// torchvision `center_crop` offset: `int(round((full - crop) / 2.0))`.
fn center_offset(full: u32, crop: u32) -> u32 {
    if full <= crop {
        return 0;
    }
    (f64::from(full - crop) / 2.0).round_ties_even() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedder_geometry_matches_torchvision() {
        let p = Preprocess::new(
            ResizeRule::ShortSideCenterCrop {
                resize: 256,
                crop: 224,
            },
            Filter::Bicubic,
            IMAGENET,
        );
        let plan = p.plan(640, 480);
        assert_eq!((plan.resized_w, plan.resized_h), (341, 256));
        // (341 - 224) / 2 = 58.5 rounds half to even: 58.
        assert_eq!((plan.crop_x, plan.crop_y), (58, 16));
        assert_eq!((plan.out_w, plan.out_h), (224, 224));
    }

    #[test]
    fn detector_geometry_matches_groundingdino() {
        assert_eq!(short_side_max_long(512, 512, 800, 1333), (800, 800));
        assert_eq!(short_side_max_long(1024, 768, 800, 1333), (1066, 800));
        // 1000/300*800 > 1333: short side becomes round(1333*300/1000) = round(399.9) = 400.
        assert_eq!(short_side_max_long(300, 1000, 800, 1333), (400, 1333));
        assert_eq!(short_side_max_long(800, 600, 800, 1333), (1066, 800));
        assert_eq!(short_side_max_long(600, 800, 600, 1333), (600, 800));
    }

    #[test]
    fn letterbox_matches_ultralytics() {
        let p = Preprocess::new(
            ResizeRule::Letterbox {
                size: 640,
                fill: 114,
            },
            Filter::Bilinear,
            UNIT,
        );
        // 1280x720: r = 0.5 -> 640x360, vertical padding (640-360)/2 = 140.
        let plan = p.plan(1280, 720);
        assert_eq!(
            (plan.resized_w, plan.resized_h, plan.pad_x, plan.pad_y),
            (640, 360, 0, 140)
        );
        let img = image::RgbImage::from_pixel(4, 2, image::Rgb([255, 0, 0]));
        let small = Preprocess::new(
            ResizeRule::Letterbox { size: 8, fill: 114 },
            Filter::Bilinear,
            UNIT,
        );
        let t = small
            .run(
                &img,
                &mut Resizer::new(),
                &mut Vec::new(),
                &TensorPool::new(),
            )
            .unwrap();
        assert_eq!(t.shape(), [3, 8, 8]);
        let d = t.data();
        // Row 0 is padding (114/255); rows 2..6 hold the red image.
        assert!((d[0] - 114.0 / 255.0).abs() < 1e-6);
        assert!((d[2 * 8] - 1.0).abs() < 1e-6);
        assert!((d[64 + 2 * 8]).abs() < 1e-6);
    }

    #[test]
    fn normalisation_table() {
        let p = Preprocess::new(
            ResizeRule::ShortSideMaxLong {
                short: 2,
                max_long: 4,
            },
            Filter::Bilinear,
            IMAGENET,
        );
        let img = image::RgbImage::from_pixel(2, 2, image::Rgb([255, 0, 128]));
        let pool = TensorPool::new();
        let t = p
            .run(&img, &mut Resizer::new(), &mut Vec::new(), &pool)
            .unwrap();
        assert_eq!(t.shape(), [3, 2, 2]);
        let d = t.data();
        assert!((d[0] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((d[4] - (0.0 - 0.456) / 0.224).abs() < 1e-6);
        assert!((d[8] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-6);
    }
}
