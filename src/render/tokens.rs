//! Token attribution heatmaps: one prompt (wrapped like text) or several methods row by row.

use serde::{Deserialize, Serialize};

use super::axes::{colour_bar_h, fmt_score};
use super::color::{diverging, symmetric_limit, Rgb, INK, MUTED, RULE};
use super::scene::{Align, Scene, Shape};
use super::text::{display_token, is_special, text_width};
use super::Figure;
use crate::attribution::Attribution;
use crate::error::{GimError, Result};

/// Scores for the tokens of one prompt, and what they explain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenScores {
    pub tokens: Vec<String>,
    pub scores: Vec<f64>,
    /// The predicted token the scores explain.
    pub target: String,
    pub contrast: Option<String>,
    /// Method name shown under the title (empty to leave out).
    pub method: String,
}

impl TokenScores {
    pub fn new(tokens: Vec<String>, scores: Vec<f64>, target: impl Into<String>) -> Self {
        TokenScores {
            tokens,
            scores,
            target: target.into(),
            contrast: None,
            method: String::new(),
        }
    }

    fn check(&self) -> Result<()> {
        if self.tokens.len() != self.scores.len() {
            return Err(GimError::input(format!(
                "{} tokens but {} scores",
                self.tokens.len(),
                self.scores.len()
            )));
        }
        Ok(())
    }

    /// `Attribution to ␣Paris vs ␣London`.
    pub(crate) fn title(&self) -> String {
        title_for(&self.target, self.contrast.as_deref())
    }
}

pub(crate) fn title_for(target: &str, contrast: Option<&str>) -> String {
    match contrast {
        Some(c) => format!(
            "Attribution to {} vs {}",
            display_token(target),
            display_token(c)
        ),
        None => format!("Attribution to {}", display_token(target)),
    }
}

impl From<&Attribution> for TokenScores {
    fn from(a: &Attribution) -> Self {
        TokenScores {
            tokens: a.tokens.clone(),
            scores: a.attributions.clone(),
            target: a.target.clone(),
            contrast: a.contrast.clone(),
            method: a.method.clone(),
        }
    }
}

/// Options of [`token_heatmap`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapOpts {
    /// Figure width in logical pixels; tokens wrap to it.
    pub width: u32,
    /// Colour limits ±limit (default: the largest |score|).
    pub limit: Option<f64>,
    /// Print each score under its token.
    pub show_values: bool,
}

impl Default for HeatmapOpts {
    fn default() -> Self {
        HeatmapOpts {
            width: 860,
            limit: None,
            show_values: true,
        }
    }
}

const MARGIN: f64 = 24.0;
const TOKEN_PX: f64 = 13.0;
const VALUE_PX: f64 = 9.5;
const GAP: f64 = 4.0;
/// The border colour of token cells (tests count cells by it).
pub(crate) const CELL_BORDER: Rgb = Rgb(0xb4, 0xb4, 0xb4);
const SPECIAL_BORDER: Rgb = Rgb(0x7a, 0x7a, 0x7a);

fn title_block(sc: &mut Scene, title: &str, subtitle: &str) -> f64 {
    sc.bold(MARGIN, 22.0, title, 15.0, INK, Align::Left);
    if subtitle.is_empty() {
        40.0
    } else {
        sc.text(MARGIN, 42.0, subtitle, 11.0, MUTED, Align::Left);
        60.0
    }
}

/// One token cell: coloured box, token text in a colour readable on it, optional value.
#[allow(clippy::too_many_arguments)]
fn cell(
    sc: &mut Scene,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    label: &str,
    special: bool,
    fill: Rgb,
    value: Option<&str>,
) {
    sc.boxed(
        x,
        y,
        w,
        h,
        fill,
        if special { SPECIAL_BORDER } else { CELL_BORDER },
    );
    let ink = fill.text_on();
    match value {
        Some(v) => {
            sc.text(x + w / 2.0, y + 12.0, label, TOKEN_PX, ink, Align::Center);
            sc.text(x + w / 2.0, y + h - 8.5, v, VALUE_PX, ink, Align::Center);
        }
        None => sc.text(
            x + w / 2.0,
            y + h / 2.0,
            label,
            TOKEN_PX,
            ink,
            Align::Center,
        ),
    }
}

/// Narrow the figure to its content (tokens, title, colour bar) when that is less than asked.
fn shrink_to(sc: &mut Scene, extent: f64, title: &str) {
    let need = (extent + MARGIN)
        .max(MARGIN + text_width(title, 15.0, true) + MARGIN)
        .max(MARGIN + 130.0 + 320.0 + 30.0);
    sc.width = sc.width.min(need.ceil() as u32);
}

fn score_bar(sc: &mut Scene, y: f64, lim: f64, caption: &str) -> f64 {
    let x = MARGIN + text_width(caption, 11.0, false).max(88.0) + 14.0;
    let w = 320.0f64.min(f64::from(sc.width) - MARGIN - x - 10.0);
    sc.text(MARGIN, y + 6.0, caption, 11.0, MUTED, Align::Left);
    let ticks = [-lim, -lim / 2.0, 0.0, lim / 2.0, lim];
    colour_bar_h(
        sc,
        x,
        y,
        w,
        12.0,
        -lim,
        lim,
        &|v| diverging(v, lim),
        &ticks,
        &|v| fmt_score(v, lim, false),
    );
    y + 12.0 + 20.0
}

/// The prompt's tokens in reading order, wrapped to the width, coloured by score on a diverging
/// scale (blue −, red +, limits ±max|score|), with a colour bar.
pub fn token_heatmap(data: &TokenScores, opts: &HeatmapOpts) -> Result<Figure> {
    data.check()?;
    let width = opts.width.max(320);
    let lim = opts
        .limit
        .unwrap_or_else(|| symmetric_limit(data.scores.iter().copied()));
    let labels: Vec<String> = data.tokens.iter().map(|t| display_token(t)).collect();
    let values: Vec<String> = data
        .scores
        .iter()
        .map(|v| fmt_score(*v, lim, true))
        .collect();
    let h = if opts.show_values { 36.0 } else { 24.0 };
    let right = f64::from(width) - MARGIN;

    let mut sc = Scene::new(width, 0);
    let total: f64 = data.scores.iter().filter(|v| v.is_finite()).sum();
    let mut sub = vec![];
    if !data.method.is_empty() {
        sub.push(format!("method {}", data.method));
    }
    sub.push(format!("{} tokens", data.tokens.len()));
    sub.push(format!("sum {}", fmt_score(total, lim, true)));
    let mut y = title_block(&mut sc, &data.title(), &sub.join(" · "));

    let mut x = MARGIN;
    let mut extent = MARGIN;
    for (i, label) in labels.iter().enumerate() {
        let tw = text_width(label, TOKEN_PX, false);
        let vw = if opts.show_values {
            text_width(&values[i], VALUE_PX, false)
        } else {
            0.0
        };
        // Very long tokens are clipped by the figure width rather than overflowing.
        let w = (tw.max(vw) + 12.0).max(22.0).min(right - MARGIN);
        if x + w > right && x > MARGIN {
            x = MARGIN;
            y += h + 6.0;
        }
        let value = opts.show_values.then_some(values[i].as_str());
        cell(
            &mut sc,
            x,
            y,
            w,
            h,
            label,
            is_special(&data.tokens[i]),
            diverging(data.scores[i], lim),
            value,
        );
        extent = extent.max(x + w);
        x += w + GAP;
    }
    shrink_to(&mut sc, extent, &data.title());
    y += h + 22.0;
    y = score_bar(&mut sc, y, lim, "score");
    sc.height = (y + 8.0).ceil() as u32;
    sc.render()
}

/// Several methods' scores for the same tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub tokens: Vec<String>,
    pub rows: Vec<MethodRow>,
    pub target: String,
    pub contrast: Option<String>,
}

/// One method's scores (one row of a comparison).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodRow {
    pub method: String,
    pub scores: Vec<f64>,
}

impl Comparison {
    /// Rows from attributions of the same prompt (tokens and target taken from the first).
    pub fn from_attributions(atts: &[Attribution]) -> Result<Self> {
        let first = atts
            .first()
            .ok_or_else(|| GimError::input("no attributions to compare"))?;
        Ok(Comparison {
            tokens: first.tokens.clone(),
            rows: atts
                .iter()
                .map(|a| MethodRow {
                    method: a.method.clone(),
                    scores: a.attributions.clone(),
                })
                .collect(),
            target: first.target.clone(),
            contrast: first.contrast.clone(),
        })
    }
}

/// Options of [`compare_heatmap`].
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOpts {
    pub width: u32,
    /// Scale each row by its own largest |score| (methods differ in units); else one shared scale.
    pub normalize_rows: bool,
}

impl Default for CompareOpts {
    fn default() -> Self {
        CompareOpts {
            width: 860,
            normalize_rows: false,
        }
    }
}

/// One row per method, tokens in aligned columns (wrapped into blocks), one colour scale.
pub fn compare_heatmap(c: &Comparison, opts: &CompareOpts) -> Result<Figure> {
    for r in &c.rows {
        if r.scores.len() != c.tokens.len() {
            return Err(GimError::input(format!(
                "method {} has {} scores for {} tokens",
                r.method,
                r.scores.len(),
                c.tokens.len()
            )));
        }
    }
    let width = opts.width.max(360);
    let row_lims: Vec<f64> = c
        .rows
        .iter()
        .map(|r| symmetric_limit(r.scores.iter().copied()))
        .collect();
    let lim = if opts.normalize_rows {
        1.0
    } else {
        symmetric_limit(c.rows.iter().flat_map(|r| r.scores.iter().copied()))
    };
    let labels: Vec<String> = c.tokens.iter().map(|t| display_token(t)).collect();
    let label_w = c
        .rows
        .iter()
        .map(|r| text_width(&r.method, 12.0, false))
        .fold(40.0f64, f64::max)
        + 12.0;
    let x0 = MARGIN + label_w;
    let right = f64::from(width) - MARGIN;
    let col_w: Vec<f64> = labels
        .iter()
        .map(|l| {
            (text_width(l, TOKEN_PX, false) + 12.0)
                .max(22.0)
                .min(right - x0)
        })
        .collect();
    let h = 24.0;

    let mut sc = Scene::new(width, 0);
    let sub = format!(
        "{} methods · {} tokens · {}",
        c.rows.len(),
        c.tokens.len(),
        if opts.normalize_rows {
            "each row scaled to its max |score|"
        } else {
            "shared colour scale"
        }
    );
    let mut y = title_block(&mut sc, &title_for(&c.target, c.contrast.as_deref()), &sub);

    let mut start = 0;
    let mut extent = x0;
    while start < labels.len() {
        // The tokens of this block: as many as fit the width.
        let mut end = start;
        let mut x = x0;
        while end < labels.len() && (end == start || x + col_w[end] <= right) {
            x += col_w[end] + GAP;
            end += 1;
        }
        for (ri, r) in c.rows.iter().enumerate() {
            sc.text(
                MARGIN + label_w - 10.0,
                y + h / 2.0,
                r.method.as_str(),
                12.0,
                INK,
                Align::Right,
            );
            let mut x = x0;
            for i in start..end {
                let v = if opts.normalize_rows {
                    r.scores[i] / row_lims[ri]
                } else {
                    r.scores[i]
                };
                cell(
                    &mut sc,
                    x,
                    y,
                    col_w[i],
                    h,
                    &labels[i],
                    is_special(&c.tokens[i]),
                    diverging(v, lim),
                    None,
                );
                x += col_w[i] + GAP;
            }
            y += h + GAP;
            extent = extent.max(x - GAP);
        }
        start = end;
        if start < labels.len() {
            sc.shapes.push(Shape::Line {
                points: vec![(MARGIN, y + 5.0), (right, y + 5.0)],
                color: RULE,
                alpha: 1.0,
                width: 1,
            });
            y += 14.0;
        }
    }
    shrink_to(
        &mut sc,
        extent,
        &title_for(&c.target, c.contrast.as_deref()),
    );
    for s in sc.shapes.iter_mut() {
        // Block separators span the (possibly narrower) figure.
        if let Shape::Line { points, .. } = s {
            points[1].0 = points[1].0.min(f64::from(sc.width) - MARGIN);
        }
    }
    y += 18.0;
    let caption = if opts.normalize_rows {
        "score / row max"
    } else {
        "score"
    };
    y = score_bar(&mut sc, y, lim, caption);
    sc.height = (y + 8.0).ceil() as u32;
    sc.render()
}
