//! The annotated generated image: every subject's crop outlined in the subject's colour and
//! labelled with its name and similarity; subjects for which the whole image was embedded
//! (a fallback) listed in a caption at the top left instead. Drawn by plotters into the
//! image's own RGB buffer, text in the bundled font.

use image::RgbImage;
use plotters::backend::BitMapBackend;
use plotters::prelude::*;

use crate::fonts::SANS;
use crate::reward::crop::Window;

/// Subject colours, in subject order (PSRBench has at most four subjects an image).
pub const PALETTE: [[u8; 3]; 4] = [[230, 25, 75], [0, 130, 200], [60, 180, 75], [245, 130, 48]];

/// One subject to mark: where its crop was (in the generated image's pixels), or `None`
/// when the whole image was embedded, and its label.
pub struct Mark {
    pub window: Option<Window>,
    pub label: String,
}

/// Why the drawing failed (the font, or the backend refusing a shape).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the explanation: {0}")]
pub struct DrawError(String);

/// The colour of subject `s`.
pub fn colour(s: usize) -> RGBColor {
    let [r, g, b] = PALETTE[s % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Draws `marks` onto `img`, an image scaled by `scale` from the one the windows refer to.
pub fn annotate(img: &mut RgbImage, scale: f64, marks: &[Mark]) -> Result<(), DrawError> {
    crate::fonts::register_sans().map_err(|e| DrawError(e.to_string()))?;
    let (w, h) = img.dimensions();
    let stroke = (w.max(h) / 300).max(2);
    let font_px = (w.min(h) / 24).clamp(11, 22);
    let area = BitMapBackend::with_buffer(img, (w, h)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| DrawError(e.to_string());
    let mut caption_y = 0i32;
    for (s, mark) in marks.iter().enumerate() {
        let style = colour(s);
        match mark.window {
            Some(window) => {
                let (x0, y0, x1, y1) = scaled(window, scale, w, h);
                area.draw(&Rectangle::new(
                    [(x0, y0), (x1, y1)],
                    style.stroke_width(stroke),
                ))
                .map_err(err)?;
                let (_, text_h) = text_size(&area, &mark.label, font_px)?;
                // Above the box when there is room, else just inside its top edge.
                let top = if y0 >= text_h + 4 {
                    y0 - text_h - 4
                } else {
                    y0 + stroke as i32
                };
                label(&area, &mark.label, (x0, top), style, font_px)?;
            }
            None => {
                let (_, text_h) = label(&area, &mark.label, (0, caption_y), style, font_px)?;
                caption_y += text_h + 5;
            }
        }
    }
    area.present().map_err(err)
}

/// A window scaled into the drawn image, as inclusive corner pixels.
fn scaled((x0, y0, x1, y1): Window, scale: f64, w: u32, h: u32) -> (i32, i32, i32, i32) {
    let at = |v: u32, limit: u32| ((f64::from(v) * scale).round() as u32).min(limit - 1) as i32;
    let end = |v: u32, limit: u32| {
        (((f64::from(v) * scale).round() as u32).saturating_sub(1)).min(limit - 1) as i32
    };
    (at(x0, w), at(y0, h), end(x1, w), end(y1, h))
}

fn text_size(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    text: &str,
    font_px: u32,
) -> Result<(i32, i32), DrawError> {
    let (tw, th) = area
        .estimate_text_size(text, &(SANS, font_px).into_text_style(area))
        .map_err(|e| DrawError(e.to_string()))?;
    Ok((tw as i32, th as i32))
}

/// White text on a filled box of the subject's colour at `at` (top left); returns its size.
fn label(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    text: &str,
    at: (i32, i32),
    style: RGBColor,
    font_px: u32,
) -> Result<(i32, i32), DrawError> {
    let (tw, th) = text_size(area, text, font_px)?;
    let err = |e: DrawingAreaErrorKind<_>| DrawError(e.to_string());
    let (bw, bh) = (tw + 6, th + 4);
    area.draw(&Rectangle::new(
        [at, (at.0 + bw, at.1 + bh)],
        style.filled(),
    ))
    .map_err(err)?;
    area.draw_text(
        text,
        &(SANS, font_px).into_font().color(&WHITE),
        (at.0 + 3, at.1 + 2),
    )
    .map_err(err)?;
    Ok((bw, bh))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(w: u32, h: u32) -> RgbImage {
        RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128]))
    }

    #[test]
    fn the_outline_lies_on_the_window_edges() {
        let mut img = grey(200, 160);
        let window = (40, 50, 120, 140);
        let marks = [Mark {
            window: Some(window),
            label: "cat 0.91".into(),
        }];
        annotate(&mut img, 1.0, &marks).unwrap();
        let red = image::Rgb(PALETTE[0]);
        let mid_y = 95;
        assert_eq!(img.get_pixel(40, mid_y), &red, "left edge");
        assert_eq!(img.get_pixel(119, mid_y), &red, "right edge");
        assert_eq!(img.get_pixel(80, 139), &red, "bottom edge");
        // The inside and the outside keep the image.
        assert_eq!(img.get_pixel(80, 95).0, [128; 3]);
        assert_eq!(img.get_pixel(160, 95).0, [128; 3]);
    }

    #[test]
    fn a_scaled_image_has_its_outline_at_the_scaled_window() {
        let mut img = grey(100, 80);
        let marks = [Mark {
            window: Some((40, 50, 120, 140)),
            label: "dog".into(),
        }];
        annotate(&mut img, 0.5, &marks).unwrap();
        assert_eq!(img.get_pixel(20, 47).0, PALETTE[0]);
        assert_eq!(img.get_pixel(59, 47).0, PALETTE[0]);
    }

    #[test]
    fn whole_image_subjects_are_captioned_not_outlined() {
        let mut img = grey(120, 120);
        let marks = [
            Mark {
                window: None,
                label: "cat 0.40 not detected".into(),
            },
            Mark {
                window: None,
                label: "crab 0.30 not detected".into(),
            },
        ];
        annotate(&mut img, 1.0, &marks).unwrap();
        // Both captions' backgrounds, one under the other, at the left.
        assert_eq!(img.get_pixel(1, 1).0, PALETTE[0]);
        let second = (0..60).find(|&y| img.get_pixel(1, y).0 == PALETTE[1]);
        assert!(second.is_some(), "second caption missing");
        // Nothing at the bottom right.
        assert_eq!(img.get_pixel(110, 110).0, [128; 3]);
    }
}
