//! Grids over model components: layer × head scores (plus each layer's MLP) and one head's
//! attention pattern.

use serde::{Deserialize, Serialize};

use super::axes::{colour_bar_v, fmt_score, fmt_tick, nice_ticks};
use super::color::{diverging, sequential, symmetric_limit, Rgb, INK, MUTED};
use super::scene::{Align, Scene, Shape};
use super::text::{display_token, text_width};
use super::Figure;
use crate::error::{GimError, Result};

/// Scores of attention heads, `scores[layer][head]`, and optionally of each layer's MLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadScores {
    pub scores: Vec<Vec<f64>>,
    pub mlp: Option<Vec<f64>>,
    pub title: String,
    /// How many of the largest |score| cells get their value printed.
    pub top_k: usize,
}

const MARGIN: f64 = 24.0;
/// Outline of annotated (top-k) cells.
const TOP_OUTLINE: Rgb = Rgb(0x1a, 0x1a, 0x1a);

fn outline(sc: &mut Scene, x: f64, y: f64, w: f64, h: f64, c: Rgb) {
    sc.shapes.push(Shape::Rect {
        x,
        y,
        w,
        h,
        fill: None,
        stroke: Some((c, 1)),
    });
}

/// The first `k` indices by |value| (largest first; ties by position, so output is stable).
fn top_indices(values: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len())
        .filter(|i| values[*i].is_finite())
        .collect();
    idx.sort_by(|a, b| values[*b].abs().total_cmp(&values[*a].abs()).then(a.cmp(b)));
    idx.truncate(k);
    idx
}

/// Label every `step`-th of `n` axis positions so labels `cell` px apart do not collide.
fn label_step(cell: f64, widest: f64) -> usize {
    ((widest + 4.0) / cell).ceil().max(1.0) as usize
}

/// Layer × head heatmap (layer 0 on top), an `MLP` column after a gap, diverging colours with
/// symmetric limits, the `top_k` cells outlined and annotated with their value.
pub fn head_heatmap(h: &HeadScores) -> Result<Figure> {
    let layers = h.scores.len();
    let heads = h.scores.first().map_or(0, Vec::len);
    if layers == 0 || heads == 0 || h.scores.iter().any(|r| r.len() != heads) {
        return Err(GimError::input(
            "head scores must be a non-empty layers × heads grid",
        ));
    }
    if let Some(m) = &h.mlp {
        if m.len() != layers {
            return Err(GimError::input(format!(
                "{} MLP scores for {layers} layers",
                m.len()
            )));
        }
    }
    let mlp = h.mlp.as_deref();
    let cols = heads + usize::from(mlp.is_some());
    let cell = (620.0 / cols as f64)
        .min(460.0 / layers as f64)
        .clamp(12.0, 40.0)
        .floor();
    let mlp_gap = 10.0;
    let all: Vec<f64> = h
        .scores
        .iter()
        .flatten()
        .copied()
        .chain(mlp.into_iter().flatten().copied())
        .collect();
    let lim = symmetric_limit(all.iter().copied());

    let label_w = text_width(&format!("L{}", layers - 1), 11.0, false) + 10.0;
    let x0 = MARGIN + label_w;
    let y0 = 78.0;
    let grid_w = heads as f64 * cell + if mlp.is_some() { mlp_gap + cell } else { 0.0 };
    let grid_h = layers as f64 * cell;
    let bar_x = x0 + grid_w + 24.0;
    // wide enough for the title too: real models have few heads and long metric names
    let title_w = MARGIN + text_width(&h.title, 15.0, true) + MARGIN;
    let width = (bar_x + 12.0 + 60.0 + MARGIN).max(360.0).max(title_w);
    let mut sc = Scene::new(width.ceil() as u32, (y0 + grid_h + 24.0).ceil() as u32);

    sc.bold(MARGIN, 22.0, h.title.as_str(), 15.0, INK, Align::Left);
    sc.text(
        MARGIN,
        42.0,
        format!(
            "{layers} layers × {heads} heads{} · top {} annotated",
            if mlp.is_some() { " + MLP" } else { "" },
            h.top_k
        ),
        11.0,
        MUTED,
        Align::Left,
    );
    let col_x = |c: usize| {
        if c < heads {
            x0 + c as f64 * cell
        } else {
            x0 + heads as f64 * cell + mlp_gap
        }
    };
    let hstep = label_step(cell, text_width(&format!("H{}", heads - 1), 10.0, false));
    for hd in (0..heads).step_by(hstep) {
        sc.text(
            col_x(hd) + cell / 2.0,
            y0 - 9.0,
            format!("H{hd}"),
            10.0,
            MUTED,
            Align::Center,
        );
    }
    if mlp.is_some() {
        sc.text(
            col_x(heads) + cell / 2.0,
            y0 - 9.0,
            "MLP",
            10.0,
            MUTED,
            Align::Center,
        );
    }
    let lstep = label_step(cell, 11.0);
    for l in (0..layers).step_by(lstep) {
        sc.text(
            x0 - 6.0,
            y0 + (l as f64 + 0.5) * cell,
            format!("L{l}"),
            11.0,
            MUTED,
            Align::Right,
        );
    }
    sc.text(x0 - 6.0, y0 - 9.0, "layer", 10.0, MUTED, Align::Right);

    let value_at = |l: usize, c: usize| {
        if c < heads {
            h.scores[l][c]
        } else {
            mlp.map_or(0.0, |m| m[l])
        }
    };
    for l in 0..layers {
        for c in 0..cols {
            let v = value_at(l, c);
            sc.rect(
                col_x(c),
                y0 + l as f64 * cell,
                cell,
                cell,
                diverging(v, lim),
            );
        }
    }
    // Thin white grid lines so equal neighbours stay distinguishable.
    for l in 0..=layers {
        let y = y0 + l as f64 * cell;
        sc.line(
            vec![(x0, y), (x0 + heads as f64 * cell, y)],
            Rgb(255, 255, 255),
            1,
        );
        if mlp.is_some() {
            sc.line(
                vec![(col_x(heads), y), (col_x(heads) + cell, y)],
                Rgb(255, 255, 255),
                1,
            );
        }
    }
    for c in 0..=heads {
        let x = x0 + c as f64 * cell;
        sc.line(vec![(x, y0), (x, y0 + grid_h)], Rgb(255, 255, 255), 1);
    }
    let flat: Vec<f64> = (0..layers)
        .flat_map(|l| (0..cols).map(move |c| (l, c)))
        .map(|(l, c)| value_at(l, c))
        .collect();
    let size = (cell * 0.3).clamp(7.0, 10.0);
    for i in top_indices(&flat, h.top_k) {
        let (l, c) = (i / cols, i % cols);
        let (x, y) = (col_x(c), y0 + l as f64 * cell);
        outline(&mut sc, x, y, cell, cell, TOP_OUTLINE);
        let fill = diverging(flat[i], lim);
        sc.text(
            x + cell / 2.0,
            y + cell / 2.0,
            fmt_score(flat[i], lim, false),
            size,
            fill.text_on(),
            Align::Center,
        );
    }
    let bar_h = grid_h.clamp(80.0, 260.0);
    let ticks = [-lim, -lim / 2.0, 0.0, lim / 2.0, lim];
    colour_bar_v(
        &mut sc,
        bar_x,
        y0,
        12.0,
        bar_h,
        -lim,
        lim,
        &|v| diverging(v, lim),
        &ticks,
        &|v| fmt_score(v, lim, false),
    );
    sc.height = sc.height.max((y0 + bar_h + 30.0).ceil() as u32);
    sc.render()
}

/// One head's attention pattern, `pattern[query][key]` over the same tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionPattern {
    pub tokens: Vec<String>,
    pub pattern: Vec<Vec<f64>>,
    pub layer: usize,
    pub head: usize,
}

/// Query × key heatmap (queries down, keys across) with token labels; masked future keys grey.
pub fn attention_pattern(a: &AttentionPattern) -> Result<Figure> {
    let n = a.tokens.len();
    if n == 0 || a.pattern.len() != n || a.pattern.iter().any(|r| r.len() != n) {
        return Err(GimError::input(format!(
            "attention pattern must be {n} × {n} for {n} tokens"
        )));
    }
    let labels: Vec<String> = a.tokens.iter().map(|t| display_token(t)).collect();
    let cell = (560.0 / n as f64).clamp(6.0, 30.0).floor();
    let fs = (cell * 0.8).clamp(6.0, 11.0);
    let widest = labels
        .iter()
        .map(|l| text_width(l, fs, false))
        .fold(0.0, f64::max)
        .min(160.0);
    let x0 = MARGIN + widest + 8.0;
    let y0 = 64.0;
    let grid = n as f64 * cell;
    let bar_x = x0 + grid + 20.0;
    let max = a
        .pattern
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-12);
    let vmax = if max <= 1.0 { 1.0 } else { max };
    let width = (bar_x + 12.0 + 40.0 + MARGIN).max(360.0);
    let height = y0 + grid + 10.0 + widest + 30.0;
    let mut sc = Scene::new(width.ceil() as u32, height.ceil() as u32);
    sc.bold(
        MARGIN,
        22.0,
        format!("Attention pattern L{}H{}", a.layer, a.head),
        15.0,
        INK,
        Align::Left,
    );
    sc.text(
        MARGIN,
        42.0,
        format!("{n} tokens · rows: query · columns: key"),
        11.0,
        MUTED,
        Align::Left,
    );
    let masked = Rgb(0xee, 0xee, 0xee);
    for (q, (label, row)) in labels.iter().zip(&a.pattern).enumerate() {
        sc.text(
            x0 - 5.0,
            y0 + (q as f64 + 0.5) * cell,
            label.as_str(),
            fs,
            INK,
            Align::Right,
        );
        for (k, &v) in row.iter().enumerate() {
            let fill = if k > q && v == 0.0 {
                masked
            } else {
                sequential(v, vmax)
            };
            sc.rect(x0 + k as f64 * cell, y0 + q as f64 * cell, cell, cell, fill);
        }
    }
    for (k, l) in labels.iter().enumerate() {
        sc.push_text(
            x0 + (k as f64 + 0.5) * cell,
            y0 + grid + 5.0,
            l.clone(),
            fs,
            INK,
            Align::Right,
            false,
            true,
        );
    }
    outline(&mut sc, x0, y0, grid, grid, Rgb(0xb4, 0xb4, 0xb4));
    let bar_h = grid.clamp(80.0, 240.0);
    let ticks = nice_ticks(0.0, vmax, 4);
    let step = ticks.get(1).copied().unwrap_or(vmax) - ticks.first().copied().unwrap_or(0.0);
    colour_bar_v(
        &mut sc,
        bar_x,
        y0,
        12.0,
        bar_h,
        0.0,
        vmax,
        &|v| sequential(v, vmax),
        &ticks,
        &|v| fmt_tick(v, step),
    );
    sc.render()
}
