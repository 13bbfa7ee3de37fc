//! Figures, drawn with plotters into PNG and SVG from the same code. A font is embedded in the
//! binary (DejaVu Sans), so figures render the same on machines without any fonts installed.

use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

pub const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

const FONT: &str = "sans-serif";

fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Both styles map to the same face: we only need legible text, not typography.
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if plotters::style::register_font(FONT, style, dejavu::sans::regular()).is_err() {
                panic!("the embedded DejaVu Sans font does not parse");
            }
        }
    });
}

/// A drawing that can be rendered on any plotters backend.
pub trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String>;
}

/// Write `stem.png` and `stem.svg`.
pub fn save(fig: &impl Figure, stem: &Path) -> Result<()> {
    ensure_font();
    let fail = |e: String| Error::Io {
        path: stem.to_path_buf(),
        cause: std::io::Error::other(e),
    };
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    {
        let root = BitMapBackend::new(&png, fig.size()).into_drawing_area();
        fig.draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg, fig.size()).into_drawing_area();
        fig.draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// Line charts side by side (or stacked), under one title.
pub struct LineFigure {
    pub title: String,
    pub panels: Vec<Panel>,
    /// (rows, columns)
    pub grid: (usize, usize),
    pub size: (u32, u32),
}

fn bounds(series: &[Series], log: bool) -> (f64, f64, f64, f64) {
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.1.is_finite() && (!log || p.1 > 0.0));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return (0.0, 1.0, if log { 0.1 } else { 0.0 }, 1.0);
    }
    if x0 == x1 {
        x1 = x0 + 1.0;
    }
    if log {
        (x0, x1, y0 / 1.25, y1 * 1.25)
    } else {
        let pad = ((y1 - y0) * 0.05).max(1e-9);
        (x0, x1, y0 - pad, y1 + pad)
    }
}

/// A tick label with as many decimals as its magnitude needs: 2, 0.7, 0.05, 0.0001; on a
/// linear axis spanning `span`, at least as many as tell its eight ticks apart (0.225, 0.230).
fn tick(v: f64, span: Option<f64>) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = if v == 0.0 { 0.0 } else { -v.abs().log10().floor() };
    let spacing = span
        .filter(|s| *s > 0.0)
        .map_or(0.0, |s| -(s / 8.0).log10().floor());
    let decimals = magnitude.max(spacing).max(0.0) as usize;
    if v == 0.0 && span.is_none() {
        return format!("{v}");
    }
    format!("{v:.decimals$}")
}

fn e(err: impl std::fmt::Display) -> String {
    err.to_string()
}

macro_rules! draw_panel {
    ($area:expr, $p:expr, $y_range:expr, $x0:expr, $x1:expr, $span:expr) => {{
        let mut chart = ChartBuilder::on($area)
            .caption(&$p.title, (FONT, 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d($x0..$x1, $y_range)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc($p.x_desc.as_str())
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| tick(*y, $span))
            .y_labels(8)
            .y_desc($p.y_desc.as_str())
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .light_line_style(RGBColor(246, 246, 246))
            .draw()
            .map_err(e)?;
        for s in &$p.series {
            let color = s.color;
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied().filter(|p| p.1.is_finite()),
                    color.stroke_width(2),
                ))
                .map_err(e)?
                .label(s.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()
            .map_err(e)?;
    }};
}

impl Figure for LineFigure {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(e)?;
        let root = root.titled(&self.title, (FONT, 22)).map_err(e)?;
        let areas = root.split_evenly(self.grid);
        for (area, p) in areas.iter().zip(&self.panels) {
            let (x0, x1, y0, y1) = bounds(&p.series, p.log_y);
            if p.log_y {
                draw_panel!(area, p, (y0..y1).log_scale(), x0, x1, None);
            } else {
                draw_panel!(area, p, y0..y1, x0, x1, Some(y1 - y0));
            }
        }
        Ok(())
    }
}

/// A white page with a title and, under it, a caption line: the [`HEADER`] of a grid figure.
fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    caption: &str,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(e)?;
    root.draw(&Text::new(title, (10, 8), (FONT, 22).into_font()))
        .map_err(e)?;
    root.draw(&Text::new(caption, (10, 38), (FONT, 15).into_font()))
        .map_err(e)?;
    Ok(())
}

/// One sample image with what each network predicted.
pub struct SampleCell {
    pub pixels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
    pub label: u8,
    /// (network label, top-3 classes)
    pub predictions: Vec<(String, Vec<usize>)>,
}

/// A grid of images, drawn dark on light, each with its true label and top-3 predictions
/// named by `classes`; a wrong top-1 is printed in red.
pub struct SamplesFigure {
    pub title: String,
    pub caption: String,
    pub cells: Vec<SampleCell>,
    pub columns: usize,
    /// The name of each class: digits for MNIST (`[7 1 2]`), words for Fashion-MNIST
    /// (`[Sneaker, Sandal, Bag]`).
    pub classes: Vec<String>,
}

/// The narrowest cell, wide enough for MNIST's digits; longer class names widen every cell.
const CELL_W: u32 = 190;
const CELL_H: u32 = 200;
const SCALE: i32 = 4;
const HEADER: u32 = 70;
const LABEL_FONT: u32 = 16;
const PREDICTION_FONT: u32 = 15;

impl SamplesFigure {
    fn name(&self, class: usize) -> String {
        self.classes
            .get(class)
            .cloned()
            .unwrap_or_else(|| class.to_string())
    }

    fn label_text(&self, cell: &SampleCell) -> String {
        format!("true {}", self.name(cell.label as usize))
    }

    /// The line of one network's top-3 under a cell, and whether its top-1 is wrong.
    fn prediction_text(&self, cell: &SampleCell, net: &str, top: &[usize]) -> (String, bool) {
        let wrong = top.first().is_some_and(|&t| t != cell.label as usize);
        let names: Vec<String> = top.iter().map(|&c| self.name(c)).collect();
        // Digits read best as `[7 1 2]`; names with spaces in them need commas.
        let sep = if crate::data::sets::are_digits(&self.classes) {
            " "
        } else {
            ", "
        };
        let text = format!("{net}: [{}]{}", names.join(sep), if wrong { " ✗" } else { "" });
        (text, wrong)
    }

    /// Every cell's width: [`CELL_W`], or wider where a label or a line of predictions needs it.
    fn cell_width(&self) -> u32 {
        ensure_font();
        let width = |text: &str, size: u32| {
            (FONT, size)
                .into_font()
                .box_size(text)
                .map(|(w, _)| w)
                .unwrap_or(0)
        };
        let mut widest = CELL_W;
        for cell in &self.cells {
            let image = 8 + cell.cols as u32 * SCALE as u32;
            widest = widest.max(image + 8 + width(&self.label_text(cell), LABEL_FONT) + 8);
            for (net, top) in &cell.predictions {
                let (text, _) = self.prediction_text(cell, net, top);
                widest = widest.max(8 + width(&text, PREDICTION_FONT) + 8);
            }
        }
        widest
    }
}

impl Figure for SamplesFigure {
    fn size(&self) -> (u32, u32) {
        let rows = self.cells.len().div_ceil(self.columns) as u32;
        (self.cell_width() * self.columns as u32, HEADER + CELL_H * rows)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        header(root, &self.title, &self.caption)?;
        let cell_w = self.cell_width() as i32;
        for (i, cell) in self.cells.iter().enumerate() {
            let cx = (i % self.columns) as i32 * cell_w;
            let cy = HEADER as i32 + (i / self.columns) as i32 * CELL_H as i32;
            let (ox, oy) = (cx + 8, cy + 4);
            root.draw(&Rectangle::new(
                [
                    (ox - 1, oy - 1),
                    (ox + cell.cols as i32 * SCALE, oy + cell.rows as i32 * SCALE),
                ],
                RGBColor(180, 180, 180).stroke_width(1),
            ))
            .map_err(e)?;
            for r in 0..cell.rows {
                for c in 0..cell.cols {
                    let v = cell.pixels[r * cell.cols + c];
                    if v == 0 {
                        continue;
                    }
                    let g = 255 - v;
                    let (x, y) = (ox + c as i32 * SCALE, oy + r as i32 * SCALE);
                    root.draw(&Rectangle::new(
                        [(x, y), (x + SCALE, y + SCALE)],
                        RGBColor(g, g, g).filled(),
                    ))
                    .map_err(e)?;
                }
            }
            let tx = ox + cell.cols as i32 * SCALE + 8;
            root.draw(&Text::new(
                self.label_text(cell),
                (tx, oy + 4),
                (FONT, LABEL_FONT).into_font(),
            ))
            .map_err(e)?;
            for (k, (net, top)) in cell.predictions.iter().enumerate() {
                let (text, wrong) = self.prediction_text(cell, net, top);
                let color = if wrong { RGBColor(200, 0, 0) } else { BLACK };
                let y = oy + cell.rows as i32 * SCALE + 8 + k as i32 * 20;
                let font = (FONT, PREDICTION_FONT).into_font().color(&color);
                root.draw(&Text::new(text, (ox, y), font)).map_err(e)?;
            }
        }
        Ok(())
    }
}

/// Weight vectors drawn as images: one row of `units` per network, each unit's weights over the
/// input pixels in a diverging scale, blue for negative, white for 0, red for positive, scaled
/// to that unit's largest |w|.
pub struct WeightsFigure {
    pub title: String,
    pub caption: String,
    /// (network label, one weight vector of `rows × cols` values per unit)
    pub networks: Vec<(String, Vec<Vec<f32>>)>,
    pub rows: usize,
    pub cols: usize,
    /// Images per line.
    pub columns: usize,
}

const WEIGHT_SCALE: i32 = 4;
const WEIGHT_GAP: i32 = 8;
const NETWORK_LABEL: i32 = 28;

impl WeightsFigure {
    fn tile(&self) -> (i32, i32) {
        (
            self.cols as i32 * WEIGHT_SCALE + WEIGHT_GAP,
            self.rows as i32 * WEIGHT_SCALE + WEIGHT_GAP,
        )
    }

    fn lines(&self, units: usize) -> i32 {
        units.div_ceil(self.columns) as i32
    }
}

/// The diverging colour of `v` in [-1, 1].
fn diverging(v: f32) -> RGBColor {
    let t = v.clamp(-1.0, 1.0);
    let fade = |c: u8, t: f32| (255.0 - (255.0 - c as f32) * t).round() as u8;
    if t >= 0.0 {
        RGBColor(fade(178, t), fade(24, t), fade(43, t))
    } else {
        RGBColor(fade(33, -t), fade(102, -t), fade(172, -t))
    }
}

impl Figure for WeightsFigure {
    fn size(&self) -> (u32, u32) {
        let (w, h) = self.tile();
        let body: i32 = self
            .networks
            .iter()
            .map(|(_, units)| NETWORK_LABEL + h * self.lines(units.len()))
            .sum();
        (
            (16 + w * self.columns as i32) as u32,
            (HEADER as i32 + body + 8) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        header(root, &self.title, &self.caption)?;
        let (tw, th) = self.tile();
        let mut y = HEADER as i32;
        for (label, units) in &self.networks {
            root.draw(&Text::new(label.as_str(), (10, y + 4), (FONT, 17).into_font()))
                .map_err(e)?;
            y += NETWORK_LABEL;
            for (i, w) in units.iter().enumerate() {
                let ox = 10 + (i % self.columns) as i32 * tw;
                let oy = y + (i / self.columns) as i32 * th;
                let peak = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let scale = if peak > 0.0 { 1.0 / peak } else { 0.0 };
                for r in 0..self.rows {
                    for c in 0..self.cols {
                        let (x, yy) = (ox + c as i32 * WEIGHT_SCALE, oy + r as i32 * WEIGHT_SCALE);
                        root.draw(&Rectangle::new(
                            [(x, yy), (x + WEIGHT_SCALE, yy + WEIGHT_SCALE)],
                            diverging(w[r * self.cols + c] * scale).filled(),
                        ))
                        .map_err(e)?;
                    }
                }
            }
            y += th * self.lines(units.len());
        }
        Ok(())
    }
}
