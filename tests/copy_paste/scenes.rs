//! Generated scenes for the copy-paste guard: procedural textured objects (a shape, two
//! colours, a texture, a pose), drawn analytically at any size and angle, and the scenes a
//! generator might produce from a reference: the reference pasted (exactly, scaled, flipped,
//! cut out, shifted, JPEG-recompressed, partly occluded) or the same object drawn anew (other
//! pose, colour or texture), or an unrelated object.
#![allow(dead_code)]

use image::{Rgb, RgbImage};

/// SplitMix64: a seeded, dependency-free source of test randomness.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn pick(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn colour(&mut self) -> [f64; 3] {
        [
            self.range(20.0, 235.0),
            self.range(20.0, 235.0),
            self.range(20.0, 235.0),
        ]
    }
}

/// The pattern that mixes an object's two colours.
#[derive(Debug, Clone, Copy)]
pub enum Texture {
    /// Stripes at an angle, with a period (in object units, the object spans -1..1).
    Stripes { angle: f64, period: f64 },
    /// A checkerboard of a cell size, rotated.
    Checks { angle: f64, cell: f64 },
    /// Round spots on a jittered grid.
    Spots { cell: f64, radius: f64, seed: u64 },
    /// Smooth value noise on a coarse grid.
    Noise { cell: f64, seed: u64 },
}

impl Texture {
    pub fn random(rng: &mut Rng) -> Self {
        let angle = rng.range(0.0, std::f64::consts::PI);
        match rng.pick(4) {
            0 => Texture::Stripes {
                angle,
                period: rng.range(0.25, 0.6),
            },
            1 => Texture::Checks {
                angle,
                cell: rng.range(0.2, 0.45),
            },
            2 => Texture::Spots {
                cell: rng.range(0.3, 0.55),
                radius: rng.range(0.3, 0.45),
                seed: rng.next_u64(),
            },
            _ => Texture::Noise {
                cell: rng.range(0.25, 0.5),
                seed: rng.next_u64(),
            },
        }
    }

    /// The accent share at object point `(u, v)`, in 0..1.
    fn value(&self, u: f64, v: f64) -> f64 {
        let rot = |a: f64| (u * a.cos() + v * a.sin(), -u * a.sin() + v * a.cos());
        match *self {
            Texture::Stripes { angle, period } => {
                let (x, _) = rot(angle);
                f64::from(u8::from((x / period).rem_euclid(1.0) < 0.5))
            }
            Texture::Checks { angle, cell } => {
                let (x, y) = rot(angle);
                let parity = ((x / cell).floor() + (y / cell).floor()).rem_euclid(2.0);
                f64::from(u8::from(parity < 1.0))
            }
            Texture::Spots { cell, radius, seed } => {
                let (gx, gy) = ((u / cell).floor(), (v / cell).floor());
                let h = lattice(seed, gx as i64, gy as i64);
                let (cx, cy) = (
                    (gx + 0.3 + 0.4 * (h & 0xff) as f64 / 255.0) * cell,
                    (gy + 0.3 + 0.4 * ((h >> 8) & 0xff) as f64 / 255.0) * cell,
                );
                let d = ((u - cx).powi(2) + (v - cy).powi(2)).sqrt() / cell;
                f64::from(u8::from(d < radius))
            }
            Texture::Noise { cell, seed } => {
                let (x, y) = (u / cell, v / cell);
                let (x0, y0) = (x.floor(), y.floor());
                let (fx, fy) = (x - x0, y - y0);
                let at = |dx: i64, dy: i64| {
                    (lattice(seed, x0 as i64 + dx, y0 as i64 + dy) & 0xffff) as f64 / 65535.0
                };
                let top = at(0, 0) * (1.0 - fx) + at(1, 0) * fx;
                let bottom = at(0, 1) * (1.0 - fx) + at(1, 1) * fx;
                let n = top * (1.0 - fy) + bottom * fy;
                ((n - 0.5) * 3.0 + 0.5).clamp(0.0, 1.0)
            }
        }
    }
}

/// A hash of a lattice point, for spots and noise.
fn lattice(seed: u64, x: i64, y: i64) -> u64 {
    let mut r = Rng::new(
        seed ^ (x as u64).wrapping_mul(0x1000_0001) ^ (y as u64).wrapping_mul(0x7fff_ffff_0001),
    );
    r.next_u64()
}

/// A procedural object: its outline, colours, texture and pose.
#[derive(Debug, Clone, Copy)]
pub struct Object {
    /// Superellipse half-axes (x, y) and exponent (2: ellipse; 4+: rounded box).
    pub axes: (f64, f64),
    pub exponent: i32,
    /// Outline wobble: amplitude and lobes.
    pub wobble: (f64, f64),
    pub base: [f64; 3],
    pub accent: [f64; 3],
    pub texture: Texture,
    /// In-plane rotation, radians.
    pub angle: f64,
}

/// A black 400x400 image with `object` drawn in its top-left quadrant (the fixture detector
/// keeps one box per colour and quadrant), and the object's box.
pub fn drawn_top_left(object: &Object) -> (RgbImage, [u32; 4]) {
    let mut img = RgbImage::new(400, 400);
    let b = object.draw(&mut img, 100.0, 100.0, 150.0);
    (img, b)
}

/// A red object with yellow checks at `angle`: the fixture detector finds its red pixels, and
/// the checks give the copy-paste guard texture to compare (the service tests' subject).
pub fn textured_red(angle: f64) -> Object {
    Object {
        axes: (0.95, 0.8),
        exponent: 4,
        wobble: (0.0, 3.0),
        base: [255.0, 0.0, 0.0],
        accent: [255.0, 255.0, 0.0],
        texture: Texture::Checks {
            angle: 0.3,
            cell: 0.3,
        },
        angle,
    }
}

impl Object {
    pub fn random(rng: &mut Rng) -> Self {
        let base = rng.colour();
        let mut accent = rng.colour();
        // Keep the two colours apart so the texture is visible.
        while (0..3).map(|c| (base[c] - accent[c]).abs()).sum::<f64>() < 180.0 {
            accent = rng.colour();
        }
        Self {
            axes: (rng.range(0.75, 1.0), rng.range(0.75, 1.0)),
            exponent: [2, 3, 5][rng.pick(3)],
            wobble: (rng.range(0.0, 0.12), [3.0, 4.0, 5.0][rng.pick(3)]),
            base,
            accent,
            texture: Texture::random(rng),
            angle: 0.0,
        }
    }

    /// The object's colour at object point `(u, v)` (before the pose), or `None` outside it.
    fn colour(&self, u: f64, v: f64) -> Option<[f64; 3]> {
        if u.abs() > 1.2 || v.abs() > 1.2 {
            return None;
        }
        let r = match self.wobble.0 {
            0.0 => 1.0,
            a => 1.0 + a * (self.wobble.1 * v.atan2(u)).sin(),
        };
        let (x, y) = (u / (self.axes.0 * r), v / (self.axes.1 * r));
        if x.abs().powi(self.exponent) + y.abs().powi(self.exponent) > 1.0 {
            return None;
        }
        let m = self.texture.value(u, v);
        // A soft light from the top left gives the object shading as a render would.
        let light = 0.8 + 0.2 * (-(u + v) * 0.5).clamp(-1.0, 1.0);
        Some(std::array::from_fn(|c| {
            ((self.base[c] * (1.0 - m) + self.accent[c] * m) * light).clamp(0.0, 255.0)
        }))
    }

    /// Draws the object on `canvas`, `size` pixels across, centred at `(cx, cy)`; returns the
    /// box `[x0, y0, x1, y1)` of the pixels it covers.
    pub fn draw(&self, canvas: &mut RgbImage, cx: f64, cy: f64, size: f64) -> [u32; 4] {
        let (w, h) = canvas.dimensions();
        let half = size / 2.0;
        let reach = half * 1.5;
        let (sin, cos) = self.angle.sin_cos();
        let mut bbox = [u32::MAX, u32::MAX, 0, 0];
        let x_lo = (cx - reach).max(0.0) as u32;
        let x_hi = ((cx + reach).ceil() as u32).min(w);
        let y_lo = (cy - reach).max(0.0) as u32;
        let y_hi = ((cy + reach).ceil() as u32).min(h);
        for y in y_lo..y_hi {
            for x in x_lo..x_hi {
                let (dx, dy) = ((x as f64 + 0.5 - cx) / half, (y as f64 + 0.5 - cy) / half);
                let (u, v) = (dx * cos + dy * sin, -dx * sin + dy * cos);
                if let Some(c) = self.colour(u, v) {
                    canvas.put_pixel(x, y, Rgb(c.map(|v| v.round() as u8)));
                    bbox = [
                        bbox[0].min(x),
                        bbox[1].min(y),
                        bbox[2].max(x + 1),
                        bbox[3].max(y + 1),
                    ];
                }
            }
        }
        bbox
    }
}

/// A background: a two-colour gradient with fine noise, as a generated image's backdrop.
pub fn background(rng: &mut Rng, w: u32, h: u32) -> RgbImage {
    let (a, b) = (rng.colour(), rng.colour());
    let seed = rng.next_u64();
    RgbImage::from_fn(w, h, |x, y| {
        let t = (x + y) as f64 / (w + h) as f64;
        let h = (u64::from(x) << 32 | u64::from(y)).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
        let n = (h.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 59) as f64 - 16.0;
        Rgb(std::array::from_fn(|c| {
            (a[c] * (1.0 - t) + b[c] * t + n).clamp(0.0, 255.0) as u8
        }))
    })
}

/// Copies `src` onto `dst` with its top-left corner at `(x, y)`; returns the box it covers.
pub fn paste(dst: &mut RgbImage, src: &RgbImage, x: u32, y: u32) -> [u32; 4] {
    image::imageops::replace(dst, src, i64::from(x), i64::from(y));
    let (w, h) = dst.dimensions();
    [x, y, (x + src.width()).min(w), (y + src.height()).min(h)]
}

/// JPEG-recompresses an image at `quality` and decodes it again.
pub fn jpeg(img: &RgbImage, quality: u8) -> RgbImage {
    let mut out = Vec::new();
    let enc =
        image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::Cursor::new(&mut out), quality);
    img.write_with_encoder(enc).unwrap();
    image::load_from_memory(&out).unwrap().to_rgb8()
}

/// The crop a detector would report: the box moved by up to `jitter` of its size per edge.
pub fn detector_crop(img: &RgbImage, b: [u32; 4], jitter: f64, rng: &mut Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    let bw = f64::from(b[2] - b[0]);
    let bh = f64::from(b[3] - b[1]);
    let mut edge = |v: u32, span: f64, max: u32| {
        (f64::from(v) + rng.range(-jitter, jitter) * span)
            .round()
            .clamp(0.0, f64::from(max)) as u32
    };
    let x0 = edge(b[0], bw, w - 1);
    let y0 = edge(b[1], bh, h - 1);
    let x1 = edge(b[2], bw, w).max(x0 + 1);
    let y1 = edge(b[3], bh, h).max(y0 + 1);
    image::imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image()
}
