//! Shared pieces of figures: number formatting, nice axis ticks and colour bars.

use super::color::{Rgb, INK, MUTED, RULE};
use super::scene::{Align, Scene};

/// Decimals that show a value on a scale whose magnitude is `lim`.
fn decimals_for(lim: f64) -> usize {
    let lim = lim.abs();
    if lim >= 100.0 {
        0
    } else if lim >= 10.0 {
        1
    } else if lim >= 1.0 {
        2
    } else if lim >= 0.01 {
        3
    } else {
        4
    }
}

/// A score as figures print it: a real minus sign, fixed decimals chosen from the scale `lim`,
/// `+` on positives when `signed`, and never `−0.00`.
pub fn fmt_score(v: f64, lim: f64, signed: bool) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let d = decimals_for(lim);
    let s = format!("{:.*}", d, v.abs());
    let zero = s.chars().all(|c| c == '0' || c == '.');
    if zero {
        s
    } else if v < 0.0 {
        format!("−{s}")
    } else if signed {
        format!("+{s}")
    } else {
        s
    }
}

/// Axis ticks at 1/2/5 × 10^k steps covering [lo, hi] (about `n` of them).
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    };
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Tick label for a value on an axis whose ticks are `step` apart.
pub fn fmt_tick(v: f64, step: f64) -> String {
    // The fewest decimals that write the step exactly.
    let d = (0..6)
        .find(|d| {
            let x = step * 10f64.powi(*d as i32);
            (x - x.round()).abs() < 1e-6 * x.abs().max(1.0)
        })
        .unwrap_or(6);
    let s = format!("{:.*}", d, v.abs());
    if v < 0.0 && !s.chars().all(|c| c == '0' || c == '.') {
        format!("−{s}")
    } else {
        s
    }
}

/// A horizontal colour bar at (x, y) of size w × h, ticks and labels below, caption to the left.
#[allow(clippy::too_many_arguments)]
pub fn colour_bar_h(
    sc: &mut Scene,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    lo: f64,
    hi: f64,
    colour: &dyn Fn(f64) -> Rgb,
    ticks: &[f64],
    fmt: &dyn Fn(f64) -> String,
) {
    let steps = (w / 2.0).ceil() as usize;
    for i in 0..steps {
        let t = (i as f64 + 0.5) / steps as f64;
        let x0 = x + w * i as f64 / steps as f64;
        sc.rect(x0, y, w / steps as f64 + 0.5, h, colour(lo + t * (hi - lo)));
    }
    sc.shapes.push(super::scene::Shape::Rect {
        x,
        y,
        w,
        h,
        fill: None,
        stroke: Some((RULE, 1)),
    });
    for &t in ticks {
        let tx = x + w * (t - lo) / (hi - lo);
        sc.line(vec![(tx, y + h), (tx, y + h + 4.0)], MUTED, 1);
        sc.text(tx, y + h + 12.0, fmt(t), 10.0, INK, Align::Center);
    }
}

/// A vertical colour bar at (x, y) of size w × h (high values on top), labels to the right.
#[allow(clippy::too_many_arguments)]
pub fn colour_bar_v(
    sc: &mut Scene,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    lo: f64,
    hi: f64,
    colour: &dyn Fn(f64) -> Rgb,
    ticks: &[f64],
    fmt: &dyn Fn(f64) -> String,
) {
    let steps = (h / 2.0).ceil() as usize;
    for i in 0..steps {
        let t = 1.0 - (i as f64 + 0.5) / steps as f64;
        let y0 = y + h * i as f64 / steps as f64;
        sc.rect(x, y0, w, h / steps as f64 + 0.5, colour(lo + t * (hi - lo)));
    }
    sc.shapes.push(super::scene::Shape::Rect {
        x,
        y,
        w,
        h,
        fill: None,
        stroke: Some((RULE, 1)),
    });
    for &t in ticks {
        let ty = y + h * (1.0 - (t - lo) / (hi - lo));
        sc.line(vec![(x + w, ty), (x + w + 4.0, ty)], MUTED, 1);
        sc.text(x + w + 7.0, ty, fmt(t), 10.0, INK, Align::Left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_format_stably() {
        assert_eq!(fmt_score(0.41234, 1.2, true), "+0.41");
        assert_eq!(fmt_score(-0.41234, 0.5, true), "−0.412");
        assert_eq!(fmt_score(-0.0001, 1.5, true), "0.00");
        assert_eq!(fmt_score(12.345, 20.0, false), "12.3");
        assert_eq!(fmt_score(f64::NAN, 1.0, true), "n/a");
    }

    #[test]
    fn ticks_are_nice() {
        assert_eq!(
            nice_ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(nice_ticks(0.0, 60.0, 5), vec![0.0, 20.0, 40.0, 60.0]);
        assert_eq!(fmt_tick(0.6000000000000001, 0.2), "0.6");
        assert_eq!(fmt_tick(0.25, 0.25), "0.25");
        assert_eq!(fmt_tick(-20.0, 20.0), "−20");
        assert_eq!(fmt_tick(7.5, 2.5), "7.5");
    }
}
