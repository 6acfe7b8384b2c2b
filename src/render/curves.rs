//! Line charts, e.g. faithfulness curves (score against circuit size or fraction of tokens kept).

use serde::{Deserialize, Serialize};

use super::axes::{fmt_tick, nice_ticks};
use super::color::{CATEGORICAL, INK, MUTED, RULE};
use super::scene::{Align, Scene, Shape};
use super::text::text_width;
use super::Figure;
use crate::error::{GimError, Result};

/// One named line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub curves: Vec<Curve>,
    /// logarithmic x axis (decade ticks; points with x ≤ 0 are left out)
    #[serde(default)]
    pub log_x: bool,
}

/// A decade tick's label: 10^t written out (0.01, 0.1, 1, 10, 100) or as 1e-5 / 1e6 far out.
fn decade_label(t: f64) -> String {
    let e = t.round() as i32;
    if (-4..0).contains(&e) {
        format!("{:.*}", (-e) as usize, 10f64.powi(e))
    } else if (0..6).contains(&e) {
        format!("{}", 10i64.pow(e as u32))
    } else {
        format!("1e{e}")
    }
}

const MARGIN: f64 = 24.0;

/// A line per curve with point markers, nice ticks, light grid, legend to the right of the plot.
pub fn line_chart(c: &LineChart) -> Result<Figure> {
    let tx = |x: f64| if c.log_x { x.log10() } else { x };
    let pts: Vec<(f64, f64)> = c
        .curves
        .iter()
        .flat_map(|k| k.points.iter().map(|(x, y)| (tx(*x), *y)))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.is_empty() {
        return Err(GimError::input("line chart has no finite points"));
    }
    let (mut xlo, mut xhi, mut ylo, mut yhi) = pts.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), (x, y)| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)),
    );
    if xhi <= xlo {
        xlo -= 0.5;
        xhi += 0.5;
    }
    if yhi <= ylo {
        ylo -= 0.5;
        yhi += 0.5;
    }
    let step = |t: &[f64]| if t.len() > 1 { t[1] - t[0] } else { 1.0 };
    let xs = step(&nice_ticks(xlo, xhi, 6));
    let ys = step(&nice_ticks(ylo, yhi, 5));
    // Axis ranges snap outward to whole ticks so the frame ends on a labelled value.
    // Log axes snap to whole decades (a point on a decade ends the frame there).
    let (xlo, xhi) = if c.log_x {
        (
            (xlo + 1e-9).floor(),
            (xhi - 1e-9).ceil().max((xlo + 1e-9).floor() + 1.0),
        )
    } else {
        (
            (xlo / xs - 1e-9).floor() * xs,
            (xhi / xs + 1e-9).ceil() * xs,
        )
    };
    let (ylo, yhi) = (
        (ylo / ys - 1e-9).floor() * ys,
        (yhi / ys + 1e-9).ceil() * ys,
    );
    let xt = if c.log_x {
        // one tick per decade
        (0..=((xhi - xlo).round() as usize))
            .map(|i| xlo + i as f64)
            .collect()
    } else {
        nice_ticks(xlo, xhi, 6)
    };
    let xlabel = |t: f64| {
        if c.log_x {
            decade_label(t)
        } else {
            fmt_tick(t, xs)
        }
    };
    let yt = nice_ticks(ylo, yhi, 5);
    let ylab_w = yt
        .iter()
        .map(|v| text_width(&fmt_tick(*v, ys), 10.0, false))
        .fold(0.0, f64::max);
    let legend_w = c
        .curves
        .iter()
        .map(|k| text_width(&k.name, 11.0, false))
        .fold(0.0, f64::max)
        + 34.0;
    let (pw, ph): (f64, f64) = (520.0, 300.0);
    let px = MARGIN + 18.0 + ylab_w + 8.0;
    let py = 62.0;
    let width = px + pw + 20.0 + legend_w + MARGIN;
    let height = py + ph + 52.0;
    let mut sc = Scene::new(width.ceil() as u32, height.ceil() as u32);
    sc.bold(MARGIN, 22.0, c.title.as_str(), 15.0, INK, Align::Left);
    let mx = |x: f64| px + pw * (x - xlo) / (xhi - xlo);
    let my = |y: f64| py + ph * (1.0 - (y - ylo) / (yhi - ylo));
    for &t in &xt {
        sc.line(vec![(mx(t), py), (mx(t), py + ph)], Rgb::grid(), 1);
        sc.text(mx(t), py + ph + 12.0, xlabel(t), 10.0, INK, Align::Center);
    }
    for &t in &yt {
        sc.line(vec![(px, my(t)), (px + pw, my(t))], Rgb::grid(), 1);
        sc.text(px - 6.0, my(t), fmt_tick(t, ys), 10.0, INK, Align::Right);
    }
    sc.shapes.push(Shape::Rect {
        x: px,
        y: py,
        w: pw,
        h: ph,
        fill: None,
        stroke: Some((RULE, 1)),
    });
    sc.text(
        px + pw / 2.0,
        py + ph + 32.0,
        c.x_label.as_str(),
        11.0,
        MUTED,
        Align::Center,
    );
    sc.push_text(
        MARGIN + 4.0,
        py + ph / 2.0,
        c.y_label.clone(),
        11.0,
        MUTED,
        Align::Center,
        false,
        true,
    );
    for (k, curve) in c.curves.iter().enumerate() {
        let col = CATEGORICAL[k % CATEGORICAL.len()];
        let p: Vec<(f64, f64)> = curve
            .points
            .iter()
            .map(|(x, y)| (tx(*x), *y))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| (mx(x), my(y)))
            .collect();
        sc.line(p.clone(), col, 2);
        for (x, y) in p {
            sc.shapes.push(Shape::Circle {
                cx: x,
                cy: y,
                r: 3.0,
                fill: col,
            });
        }
        let ly = py + 8.0 + 20.0 * k as f64;
        let lx = px + pw + 20.0;
        sc.line(vec![(lx, ly), (lx + 22.0, ly)], col, 2);
        sc.shapes.push(Shape::Circle {
            cx: lx + 11.0,
            cy: ly,
            r: 3.0,
            fill: col,
        });
        sc.text(lx + 28.0, ly, curve.name.as_str(), 11.0, INK, Align::Left);
    }
    sc.render()
}

use super::color::Rgb;
impl Rgb {
    fn grid() -> Rgb {
        Rgb(0xec, 0xec, 0xec)
    }
}
