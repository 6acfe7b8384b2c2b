//! Horizontal bar charts with confidence whiskers, e.g. faithfulness scores per method: one
//! panel per measure side by side, the categories (methods) as shared rows.

use serde::{Deserialize, Serialize};

use super::axes::{fmt_tick, nice_ticks};
use super::color::{Rgb, CATEGORICAL, INK, MUTED, RULE};
use super::scene::{Align, Scene, Shape};
use super::text::text_width;
use super::Figure;
use crate::error::{GimError, Result};

/// One measure: a value and a ± error (half-width; NaN = none) per category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarPanel {
    pub title: String,
    pub values: Vec<f64>,
    pub errors: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarChart {
    pub title: String,
    /// shown under the title (e.g. what the whiskers are)
    pub subtitle: String,
    pub categories: Vec<String>,
    pub panels: Vec<BarPanel>,
}

const MARGIN: f64 = 24.0;
const ROW: f64 = 24.0;
const BAR: f64 = 14.0;
const PANEL_W: f64 = 260.0;
const GAP: f64 = 36.0;

fn grid() -> Rgb {
    Rgb(0xec, 0xec, 0xec)
}

/// Bars from zero with whiskers (value ± error), nice ticks and a light grid per panel.
pub fn bar_chart(c: &BarChart) -> Result<Figure> {
    let n = c.categories.len();
    if n == 0 || c.panels.is_empty() {
        return Err(GimError::input("bar chart has no data"));
    }
    if c.panels
        .iter()
        .any(|p| p.values.len() != n || p.errors.len() != n)
    {
        return Err(GimError::input(
            "bar chart: every panel needs one value and one error per category",
        ));
    }
    let label_w = c
        .categories
        .iter()
        .map(|k| text_width(k, 11.0, false))
        .fold(0.0, f64::max);
    let px0 = MARGIN + label_w + 10.0;
    let py = 74.0;
    let ph = ROW * n as f64;
    let np = c.panels.len() as f64;
    let width = px0 + np * PANEL_W + (np - 1.0) * GAP + MARGIN;
    let height = py + ph + 40.0;
    let mut sc = Scene::new(width.ceil() as u32, height.ceil() as u32);
    sc.bold(MARGIN, 22.0, c.title.as_str(), 15.0, INK, Align::Left);
    sc.text(MARGIN, 42.0, c.subtitle.as_str(), 11.0, MUTED, Align::Left);
    for (i, k) in c.categories.iter().enumerate() {
        let y = py + ROW * (i as f64 + 0.5);
        sc.text(px0 - 8.0, y, k.as_str(), 11.0, INK, Align::Right);
    }
    for (j, p) in c.panels.iter().enumerate() {
        let px = px0 + j as f64 * (PANEL_W + GAP);
        let col = CATEGORICAL[j % CATEGORICAL.len()];
        let ends = p.values.iter().zip(&p.errors).flat_map(|(v, e)| {
            let e = if e.is_finite() { *e } else { 0.0 };
            [v - e, v + e]
        });
        let (mut lo, mut hi) = ends
            .filter(|x| x.is_finite())
            .fold((0.0f64, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
        if hi <= lo {
            hi = lo + 1.0;
        }
        let t = nice_ticks(lo, hi, 4);
        let step = if t.len() > 1 { t[1] - t[0] } else { 1.0 };
        // Snap outward to whole ticks (a bound already on a tick stays there).
        lo = (lo / step + 1e-9).floor() * step;
        hi = (hi / step - 1e-9).ceil() * step;
        let ticks = nice_ticks(lo, hi, 4);
        let mx = |x: f64| px + PANEL_W * (x - lo) / (hi - lo);
        sc.bold(px, py - 16.0, p.title.as_str(), 12.0, INK, Align::Left);
        for &tk in &ticks {
            sc.line(vec![(mx(tk), py), (mx(tk), py + ph)], grid(), 1);
            sc.text(
                mx(tk),
                py + ph + 12.0,
                fmt_tick(tk, step),
                10.0,
                INK,
                Align::Center,
            );
        }
        for (i, (v, e)) in p.values.iter().zip(&p.errors).enumerate() {
            if !v.is_finite() {
                continue;
            }
            let yc = py + ROW * (i as f64 + 0.5);
            let (a, b) = (mx(0.0f64.min(*v)), mx(0.0f64.max(*v)));
            sc.rect(a, yc - BAR / 2.0, (b - a).max(1.0), BAR, col);
            if e.is_finite() && *e > 0.0 {
                let (l, r) = (mx(v - e), mx(v + e));
                sc.line(vec![(l, yc), (r, yc)], INK, 1);
                sc.line(vec![(l, yc - 4.0), (l, yc + 4.0)], INK, 1);
                sc.line(vec![(r, yc - 4.0), (r, yc + 4.0)], INK, 1);
            }
        }
        sc.line(vec![(mx(0.0), py), (mx(0.0), py + ph)], MUTED, 1);
        sc.shapes.push(Shape::Rect {
            x: px,
            y: py,
            w: PANEL_W,
            h: ph,
            fill: None,
            stroke: Some((RULE, 1)),
        });
    }
    sc.render()
}
