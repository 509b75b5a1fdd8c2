//! PNG charts: a radar over the seven subsets per metric (one polygon per result set, like
//! the paper's figure) and per-subset score distributions (box plots, one per set). Drawn
//! by plotters into an RGB buffer and encoded with `image`; text uses the bundled DejaVu
//! Sans (registered once from bytes), so no system font is needed at run time.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::eval::summary::{subset_names, Metric, SetSummary, SubsetSummary, Summary};

/// Size of `radar.png`.
pub const RADAR_SIZE: (u32, u32) = (1500, 600);
/// Size of `distributions.png`.
pub const DISTRIBUTIONS_SIZE: (u32, u32) = (1400, 1050);

/// Colours of the result sets, in order (then repeated).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

use crate::fonts::SANS as FONT;

/// Why a chart could not be written.
#[derive(Debug, thiserror::Error)]
#[error("chart {name}: {message}")]
pub struct ChartError {
    name: String,
    message: String,
}

/// The metrics charted: (title, value of a subset).
/// Picks one metric of a subset.
type MetricOf = fn(&SubsetSummary) -> &Metric;

const METRICS: [(&str, MetricOf); 3] = [
    ("Subject consistency", |s| &s.subject_consistency),
    ("Alignment (semantic; position for Position)", |s| {
        &s.alignment
    }),
    ("Aesthetic", |s| &s.aesthetic),
];

/// Draws `draw` into a `size` RGB buffer and writes it to `path` as PNG.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<(), ChartError> {
    let err = |message: String| ChartError {
        name: path.display().to_string(),
        message,
    };
    crate::fonts::register_sans().map_err(|e| err(e.to_string()))?;
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let area = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        area.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        draw(&area).map_err(err)?;
        area.present().map_err(|e| err(e.to_string()))?;
    }
    let img = image::RgbImage::from_raw(size.0, size.1, buf)
        .ok_or_else(|| err("buffer size mismatch".into()))?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| err(e.to_string()))
}

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `radar.png`: one radar per metric, the subsets as spokes, a polygon per result set.
pub fn radar(summary: &Summary, path: &Path) -> Result<(), ChartError> {
    let names = subset_names(&summary.sets);
    render(path, RADAR_SIZE, |area| {
        let (panels, legend) = area.split_vertically(RADAR_SIZE.1 - 50);
        let panels = panels.split_evenly((1, METRICS.len()));
        for (panel, (title, metric)) in panels.iter().zip(METRICS) {
            let values: Vec<Vec<Option<f64>>> = summary
                .sets
                .iter()
                .map(|set| {
                    names
                        .iter()
                        .map(|n| {
                            set.subsets
                                .iter()
                                .find(|s| &s.subset == n)
                                .and_then(|s| metric(s).mean)
                        })
                        .collect()
                })
                .collect();
            radar_panel(panel, title, &names, &values)?;
        }
        legend_row(&legend, &summary.sets)
    })
}

fn radar_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    title: &str,
    names: &[String],
    values: &[Vec<Option<f64>>],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        title.to_string(),
        (10, 10),
        (FONT, 20).into_font().color(&BLACK),
    ))
    .map_err(e)?;
    let centre = (w as i32 / 2, h as i32 / 2 + 20);
    let radius = (w.min(h) as f64 / 2.0 - 70.0).max(20.0);
    let max = values
        .iter()
        .flatten()
        .flatten()
        .fold(1.0f64, |m, v| m.max(*v));
    let max = (max * 5.0).ceil() / 5.0;
    let n = names.len().max(1);
    let point = |k: usize, r: f64| {
        let angle = std::f64::consts::TAU * k as f64 / n as f64 - std::f64::consts::FRAC_PI_2;
        (
            centre.0 + (radius * r * angle.cos()).round() as i32,
            centre.1 + (radius * r * angle.sin()).round() as i32,
        )
    };
    let grid = RGBColor(200, 200, 200);
    for ring in 1..=5 {
        let r = ring as f64 / 5.0;
        let mut ring_points: Vec<_> = (0..n).map(|k| point(k, r)).collect();
        ring_points.push(point(0, r));
        area.draw(&PathElement::new(ring_points, grid)).map_err(e)?;
        area.draw(&Text::new(
            format!("{:.1}", max * r),
            (centre.0 + 3, point(0, r).1),
            (FONT, 12).into_font().color(&RGBColor(120, 120, 120)),
        ))
        .map_err(e)?;
    }
    for (k, name) in names.iter().enumerate() {
        area.draw(&PathElement::new(vec![centre, point(k, 1.0)], grid))
            .map_err(e)?;
        let (x, y) = point(k, 1.12);
        area.draw(&Text::new(
            name.clone(),
            (x - 4 * name.len() as i32, y - 8),
            (FONT, 16).into_font().color(&BLACK),
        ))
        .map_err(e)?;
    }
    for (i, set) in values.iter().enumerate() {
        let pts: Vec<_> = set
            .iter()
            .enumerate()
            .map(|(k, v)| point(k, v.unwrap_or(0.0) / max))
            .collect();
        if set.iter().all(Option::is_none) {
            continue;
        }
        area.draw(&Polygon::new(pts.clone(), colour(i).mix(0.15).filled()))
            .map_err(e)?;
        let mut outline = pts.clone();
        outline.push(pts[0]);
        area.draw(&PathElement::new(outline, colour(i).stroke_width(3)))
            .map_err(e)?;
        for p in pts {
            area.draw(&Circle::new(p, 4, colour(i).filled()))
                .map_err(e)?;
        }
    }
    Ok(())
}

fn legend_row(area: &DrawingArea<BitMapBackend, Shift>, sets: &[SetSummary]) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut x = 20;
    for (i, set) in sets.iter().enumerate() {
        area.draw(&Rectangle::new([(x, 15), (x + 24, 35)], colour(i).filled()))
            .map_err(e)?;
        area.draw(&Text::new(
            set.name.clone(),
            (x + 32, 16),
            (FONT, 18).into_font().color(&BLACK),
        ))
        .map_err(e)?;
        x += 60 + 11 * set.name.chars().count() as i32;
    }
    Ok(())
}

/// `distributions.png`: per metric, a box plot of the samples' scores per subset and set.
pub fn distributions(summary: &Summary, path: &Path) -> Result<(), ChartError> {
    let names = subset_names(&summary.sets);
    render(path, DISTRIBUTIONS_SIZE, |area| {
        let rows = area.split_evenly((METRICS.len(), 1));
        for (row, (title, metric)) in rows.iter().zip(METRICS) {
            box_row(row, title, &names, &summary.sets, metric).map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

fn box_row(
    area: &DrawingArea<BitMapBackend, Shift>,
    title: &str,
    names: &[String],
    sets: &[SetSummary],
    metric: fn(&SubsetSummary) -> &Metric,
) -> Result<(), Box<dyn std::error::Error>> {
    let all: Vec<f64> = sets
        .iter()
        .flat_map(|s| s.subsets.iter().flat_map(|x| metric(x).values.clone()))
        .collect();
    let top = all.iter().fold(1.0f64, |m, v| m.max(*v)) as f32;
    let bottom = all.iter().fold(0.0f64, |m, v| m.min(*v)) as f32;
    let n = names.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), bottom..top * 1.05)?;
    let labels: Vec<String> = names.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let k = x.round();
            if (x - k).abs() < 1e-6 && k >= 0.0 {
                labels.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .label_style((FONT, 14))
        .draw()?;
    let width = (area.dim_in_pixel().0 as f64 / n.max(1) as f64 * 0.7 / sets.len().max(1) as f64)
        .clamp(6.0, 60.0);
    for (i, set) in sets.iter().enumerate() {
        let offset = (i as f64 - (sets.len() as f64 - 1.0) / 2.0) * width * 1.1;
        for (k, name) in names.iter().enumerate() {
            let Some(values) = set
                .subsets
                .iter()
                .find(|s| &s.subset == name)
                .map(|s| &metric(s).values)
                .filter(|v| !v.is_empty())
            else {
                continue;
            };
            let q = Quartiles::new(values);
            chart.draw_series(std::iter::once(
                Boxplot::new_vertical(k as f64, &q)
                    .width(width as u32)
                    .whisker_width(0.6)
                    .offset(offset)
                    .style(colour(i).stroke_width(2)),
            ))?;
        }
    }
    Ok(())
}
