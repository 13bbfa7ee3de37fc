//! The report's "why": figures drawn from each run's `layers.csv` (see [`crate::layerstats`])
//! and first-layer weights, with sentences whose numbers and directions come from the records.
//!
//! The seed report shows that the sigmoid network learns more slowly than the ReLU one, most of
//! all at small α, without saying why. Three figures show it: the gradient that reaches each
//! hidden layer (it shrinks on its way back through sigmoid layers, whose derivative is at most
//! 1/4), how many units are saturated or dead, and what the first layer learned.

use super::{Block, Records, verdict};
use crate::error::Result;
use crate::layerstats::{self, LayerRow};
use crate::study::plot::{self, COLORS, LineFigure, Panel, Series, WeightsFigure};
use crate::study::seed::{RELU, SIGMOID};
use std::path::Path;

/// Units of the first hidden layer shown per network in the features figure.
const FEATURES_SHOWN: usize = 16;

/// Pixels this close to the image's edge make the "frame" whose weights the features
/// sentence compares with the centre's.
const FRAME: usize = 4;

/// One run's per-layer records.
struct Layers {
    rows: Vec<LayerRow>,
    /// The number of hidden layers.
    depth: usize,
}

impl Layers {
    fn of(rec: &Records, dir: &Path, group: &str) -> Result<Option<Layers>> {
        let Some(run) = rec.group(group).into_iter().next() else {
            return Ok(None);
        };
        let path = dir.join("runs").join(&run.name).join("layers.csv");
        if !path.is_file() {
            return Ok(None);
        }
        let rows = layerstats::read(&path)?;
        let depth = rows.iter().map(|r| r.layer).max().unwrap_or(0);
        Ok((depth > 0).then_some(Layers { rows, depth }))
    }

    /// One series per layer of the column `pick`.
    fn series(&self, pick: fn(&LayerRow) -> f64) -> Vec<Series> {
        (1..=self.depth)
            .map(|h| Series {
                label: format!("layer {h}"),
                points: self
                    .rows
                    .iter()
                    .filter(|r| r.layer == h)
                    .map(|r| (r.iteration as f64, pick(r)))
                    .collect(),
                color: COLORS[(h - 1) % COLORS.len()],
            })
            .collect()
    }

    fn layer(&self, h: usize) -> impl Iterator<Item = &LayerRow> {
        self.rows.iter().filter(move |r| r.layer == h)
    }

    /// ‖∂E/∂W‖ of the last hidden layer over that of the first, at each evaluation.
    fn vanishing(&self) -> Vec<f64> {
        self.layer(self.depth)
            .zip(self.layer(1))
            .map(|(last, first)| last.grad_norm / first.grad_norm)
            .collect()
    }

    /// [`Layers::vanishing`] at the first evaluation (NaN without one).
    fn vanishing_first(&self) -> f64 {
        self.vanishing().first().copied().unwrap_or(f64::NAN)
    }

    /// [`Layers::vanishing`] at the last evaluation (NaN without one).
    fn vanishing_last(&self) -> f64 {
        self.vanishing().last().copied().unwrap_or(f64::NAN)
    }

    /// The largest value of a column over every layer and evaluation.
    fn max(&self, pick: fn(&LayerRow) -> f64) -> f64 {
        self.rows.iter().map(pick).fold(f64::NEG_INFINITY, f64::max)
    }

    fn min(&self, pick: fn(&LayerRow) -> f64) -> f64 {
        self.rows.iter().map(pick).fold(f64::INFINITY, f64::min)
    }

    fn mean_of_layer(&self, h: usize, pick: fn(&LayerRow) -> f64) -> f64 {
        mean(self.layer(h).map(pick).filter(|v| v.is_finite()))
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}

fn panel(title: &str, y_desc: &str, log_y: bool, series: Vec<Series>) -> Panel {
    Panel {
        title: title.into(),
        x_desc: "iteration".into(),
        y_desc: y_desc.into(),
        log_y,
        series,
    }
}

/// "6.5× less" or "2.9× more": how the first layer's gradient compares with the last's.
fn times(ratio: f64) -> String {
    if ratio >= 1.0 {
        format!("{ratio:.1}× less")
    } else {
        format!("{:.1}× more", 1.0 / ratio)
    }
}

/// The section "Inside the networks": figures 7–9 and the table of what they show.
pub(super) fn section(rec: &Records, dir: &Path, b: &mut Vec<Block>) -> Result<()> {
    b.push(Block::Heading(
        2,
        "Inside the networks: why sigmoid learns more slowly".into(),
    ));
    let groups = [SIGMOID[0], RELU[0], SIGMOID[1], RELU[1], SIGMOID[2], RELU[2]];
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for g in groups {
        match Layers::of(rec, dir, g)? {
            Some(l) => found.push(l),
            None => missing.push(format!("`{g}`")),
        }
    }
    if !missing.is_empty() {
        b.push(Block::Para(format!(
            "(Figures 7 and 8 omitted: no `layers.csv` for {}. Runs record it at every evaluation; a run that did not finish, or one trained by a version before the per-layer records, has none.)",
            missing.join(", ")
        )));
    } else {
        let [s2, r2, s3, r3, s4, r4] = <[Layers; 6]>::try_from(found).ok().expect("six runs");
        b.push(Block::Para(format!(
            "At every evaluation each run passes one fixed batch of {} training images through the readable network and records, for each hidden layer, the norm of the gradient of the loss with respect to the weights feeding it, how far a step moves those weights, and how many of its units are saturated or dead (`layers.csv`, documented in `docs/watching.md`).",
            crate::layerstats::PROBE_BATCH
        )));
        gradient_figure(dir, b, [&s2, &r2, &s4, &r4])?;
        saturation_figure(dir, b, [&s2, &r2, &s4, &r4])?;
        claims(b, [&s2, &s3, &s4], [&r2, &r3, &r4]);
    }
    features_figure(rec, dir, b)
}

fn gradient_figure(dir: &Path, b: &mut Vec<Block>, [s2, r2, s4, r4]: [&Layers; 4]) -> Result<()> {
    let grad = |r: &LayerRow| r.grad_norm;
    let y = "‖∂E/∂W‖ (log scale)";
    let fig = LineFigure {
        title: "Gradient reaching each hidden layer, ‖∂E/∂W‖ on a fixed batch".into(),
        panels: vec![
            panel("sigmoid, α = 1e-2", y, true, s2.series(grad)),
            panel("ReLU, α = 1e-2", y, true, r2.series(grad)),
            panel("sigmoid, α = 1e-4", y, true, s4.series(grad)),
            panel("ReLU, α = 1e-4", y, true, r4.series(grad)),
        ],
        grid: (2, 2),
        size: (1300, 950),
    };
    plot::save(&fig, &dir.join("fig7-gradients"))?;
    b.push(Block::Figure(
        "fig7-gradients".into(),
        format!(
            "Figure 7. The gradient reaching each hidden layer (layer 1 is next to the input). At the first evaluation, α = 1e-2, the sigmoid network's first layer gets {} gradient than its layer {}, the ReLU network's {}. At the end of training the sigmoid network's first layer gets {} at α = 1e-4 and {} at α = 1e-2.",
            times(s2.vanishing_first()),
            s2.depth,
            times(r2.vanishing_first()),
            times(s4.vanishing_last()),
            times(s2.vanishing_last()),
        ),
    ));
    Ok(())
}

fn saturation_figure(dir: &Path, b: &mut Vec<Block>, [s2, r2, s4, r4]: [&Layers; 4]) -> Result<()> {
    let sat = |r: &LayerRow| r.saturated;
    let df = |r: &LayerRow| r.mean_abs_df;
    let fig = LineFigure {
        title: "Saturated and dead units, and the mean |f′(z)| that scales the backward signal".into(),
        panels: vec![
            panel(
                "sigmoid, α = 1e-2: saturated outputs",
                "fraction within 0.02 of 0 or 1",
                false,
                s2.series(sat),
            ),
            panel(
                "ReLU, α = 1e-2: dead units",
                "fraction 0 on every image of the batch",
                false,
                r2.series(sat),
            ),
            panel(
                "sigmoid, α = 1e-4: mean |f′(z)|",
                "mean |f′(z)|",
                false,
                s4.series(df),
            ),
            panel(
                "ReLU, α = 1e-4: mean |f′(z)|",
                "mean |f′(z)|",
                false,
                r4.series(df),
            ),
        ],
        grid: (2, 2),
        size: (1300, 950),
    };
    plot::save(&fig, &dir.join("fig8-saturation"))?;
    b.push(Block::Figure(
        "fig8-saturation".into(),
        format!(
            "Figure 8. Top: the fraction of saturated sigmoid outputs and of dead ReLU units at α = 1e-2; bottom: the mean |f′(z)| at α = 1e-4. At most {:.1}% of the sigmoid network's outputs are saturated at α = 1e-2, {:.1}% at α = 1e-4; its mean |f′| stays between {:.3} and {:.3} (never above 1/4, the sigmoid derivative's peak), the ReLU network's between {:.3} and {:.3} (the fraction of active units).",
            100.0 * s2.max(sat),
            100.0 * s4.max(sat),
            s4.min(df),
            s4.max(df),
            r4.min(df),
            r4.max(df),
        ),
    ));
    Ok(())
}

/// The table of what figures 7 and 8 show, each row checked against the records.
fn claims(b: &mut Vec<Block>, sigmoid: [&Layers; 3], relu: [&Layers; 3]) {
    let rates = "α = 1e-2, 1e-3, 1e-4";
    let (sf, rf): (Vec<f64>, Vec<f64>) = (
        sigmoid.iter().map(|l| l.vanishing_first()).collect(),
        relu.iter().map(|l| l.vanishing_first()).collect(),
    );
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let mut rows = vec![vec![
        "The gradient shrinks on its way back through the sigmoid network, not through the ReLU one".into(),
        format!(
            "‖∂E/∂W^last‖ / ‖∂E/∂W¹‖ at the first evaluation ({rates}): sigmoid {}, ReLU {}",
            list(&sf),
            list(&rf)
        ),
        verdict(
            sf.iter().all(|&x| x > 1.0)
                && rf.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                    < sf.iter().cloned().fold(f64::INFINITY, f64::min),
        ),
    ]];
    let (s4, r4) = (sigmoid[2], relu[2]);
    let (sv, rv) = (mean(s4.vanishing().into_iter()), mean(r4.vanishing().into_iter()));
    let upd = |r: &LayerRow| r.update_ratio;
    let (su, ru) = (s4.mean_of_layer(1, upd), r4.mean_of_layer(1, upd));
    rows.push(vec![
        "At α = 1e-4 the sigmoid network's first layer stays starved through training and barely moves".into(),
        format!(
            "the same ratio, mean over the run: sigmoid {sv:.2}, ReLU {rv:.2}; ‖ΔW¹‖/‖W¹‖ per step, mean: sigmoid {su:.2e}, ReLU {ru:.2e}"
        ),
        verdict(sv > 1.0 && rv < sv && su < ru),
    ]);
    let sat = |r: &LayerRow| r.saturated;
    let (big, small) = (sigmoid[0].max(sat), sigmoid[2].max(sat));
    rows.push(vec![
        "Saturation is not what slows the sigmoid network at small α: its units saturate only when a large α grows the weights".into(),
        format!(
            "largest fraction of saturated outputs in any layer: {:.1}% at α = 1e-2, {:.1}% at α = 1e-4",
            100.0 * big,
            100.0 * small
        ),
        verdict(small < 0.01 && big > small),
    ]);
    let last_dead = |l: &Layers| l.layer(1).last().map(|r| r.saturated).unwrap_or(f64::NAN);
    let (d2, d4) = (last_dead(relu[0]), last_dead(relu[2]));
    rows.push(vec![
        "A large α kills ReLU units".into(),
        format!(
            "first hidden layer's units dead on the whole batch at the end: {:.1}% at α = 1e-2, {:.1}% at α = 1e-4",
            100.0 * d2,
            100.0 * d4
        ),
        verdict(d2 > d4),
    ]);
    b.push(Block::Table(
        ["what the records show", "evidence", "verdict"]
            .map(String::from)
            .to_vec(),
        rows,
    ));
}

/// What figure 9 shows of one network's first layer.
struct FirstLayer {
    /// The image's side: the layer's inputs are `side × side` pixels.
    side: usize,
    units: usize,
    /// The weights of the [`FEATURES_SHOWN`] units with the largest ‖w‖, largest first.
    largest: Vec<Vec<f32>>,
    /// The mean |w| of the pixels within [`FRAME`] of the edge over that of the rest.
    frame_ratio: f64,
}

impl FirstLayer {
    /// None when the inputs are not a square image larger than the frame.
    fn of(mlp: &crate::nn::Mlp<f32>) -> Option<FirstLayer> {
        let inputs = mlp.sizes[0];
        let side = (inputs as f64).sqrt().round() as usize;
        if side * side != inputs || side <= 2 * FRAME {
            return None;
        }
        let w = &mlp.params[mlp.layers[0].w_range()];
        let units: Vec<&[f32]> = w.chunks_exact(inputs).collect();
        let norm = |u: &[f32]| u.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
        let mut order: Vec<usize> = (0..units.len()).collect();
        // Largest norm first; ties by index, so that the figure is the same on every machine.
        order.sort_by(|&a, &b| norm(units[b]).total_cmp(&norm(units[a])).then(a.cmp(&b)));
        let largest = order
            .iter()
            .take(FEATURES_SHOWN)
            .map(|&i| units[i].to_vec())
            .collect();
        let in_frame = |p: usize| {
            let (y, x) = (p / side, p % side);
            y < FRAME || x < FRAME || y >= side - FRAME || x >= side - FRAME
        };
        let mean_abs = |frame: bool| {
            mean(
                w.iter()
                    .enumerate()
                    .filter(|(i, _)| in_frame(i % inputs) == frame)
                    .map(|(_, &v)| v.abs() as f64),
            )
        };
        Some(FirstLayer {
            side,
            units: units.len(),
            largest,
            frame_ratio: mean_abs(true) / mean_abs(false),
        })
    }
}

/// Figure 9: first-layer weights of the sigmoid and ReLU networks at α = 1e-2, read from their
/// model files.
fn features_figure(rec: &Records, dir: &Path, b: &mut Vec<Block>) -> Result<()> {
    let mut networks = Vec::new();
    let mut frames = Vec::new();
    let mut missing = Vec::new();
    let mut side = 0;
    for (group, label) in [(SIGMOID[0], "Sigmoid"), (RELU[0], "ReLU")] {
        let Some(r) = rec.group(group).into_iter().find(|r| r.status == "ok") else {
            missing.push(format!("no finished run of `{group}`"));
            continue;
        };
        let loaded = match crate::model::load(&dir.join("runs").join(&r.name)) {
            Ok(l) => l,
            Err(e) => {
                missing.push(format!("{label}: {e}"));
                continue;
            }
        };
        let Some(first) = FirstLayer::of(&loaded.mlp) else {
            let inputs = loaded.mlp.sizes[0];
            missing.push(format!("{label}: {inputs} inputs are not a square image"));
            continue;
        };
        side = first.side;
        networks.push((
            format!("{label} (first hidden layer: {} units)", first.units),
            first.largest,
        ));
        frames.push((label, first.frame_ratio));
    }
    if networks.is_empty() {
        b.push(Block::Para(format!(
            "(No features figure: {}.)",
            missing.join("; ")
        )));
        return Ok(());
    }
    let fig = WeightsFigure {
        title: format!(
            "What the first hidden layer learned, α = 1e-2: the {FEATURES_SHOWN} units with the largest ‖w‖"
        ),
        caption: "each unit's weights on the input pixels; blue negative, red positive, each scaled to its largest |w|".into(),
        networks,
        rows: side,
        cols: side,
        columns: 8,
    };
    plot::save(&fig, &dir.join("fig9-features"))?;
    let ratios = frames
        .iter()
        .enumerate()
        .map(|(i, (label, r))| {
            let of = if i == 0 { " of the rest's" } else { "" };
            format!(
                "{:.0}%{of} in the {} network",
                100.0 * r,
                label.to_lowercase().replace("relu", "ReLU")
            )
        })
        .collect::<Vec<_>>()
        .join(" and ");
    // The sentence says why only where the numbers agree with the reason it gives.
    let why = if frames.iter().all(|(_, r)| *r < 1.0) {
        "Pixels near the edge are 0 in almost every image, so their weights get almost no gradient and only decay under L2: the"
    } else {
        "The"
    };
    b.push(Block::Figure(
        "fig9-features".into(),
        format!(
            "Figure 9. The first hidden layer's weights of the {FEATURES_SHOWN} units with the largest ‖w‖ in each network at α = 1e-2. {why} mean |w| of the pixels within {FRAME} of the edge is {ratios}."
        ),
    ));
    if !missing.is_empty() {
        b.push(Block::Para(format!("(Missing: {}.)", missing.join("; "))));
    }
    Ok(())
}
