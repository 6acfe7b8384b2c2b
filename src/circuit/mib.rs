//! MIB's circuit scores from stored per-example metrics: circuit sizes at edge fractions, the two
//! rankings, faithfulness normalised after averaging, CPR and CMD (trapezoid areas) and their
//! percentile-bootstrap intervals over the evaluation examples.

use serde::{Deserialize, Serialize};

use super::edges::Edge;

/// A value and its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub est: f64,
    pub lo: f64,
    pub hi: f64,
}

/// The circuit sizes of `fractions` of `n` edges: ⌊fraction · n⌋ (MIB's `int(pct · n)`).
pub fn circuit_sizes(fractions: &[f64], n: usize) -> Vec<usize> {
    fractions
        .iter()
        .map(|f| ((f * n as f64) + 1e-9).floor().min(n as f64) as usize)
        .collect()
}

/// Edges ranked for circuits: by signed score (`absolute = false`) or by |score|, highest
/// first, ties in forward order.
pub fn ranked_edges(edges: &[Edge], absolute: bool) -> Vec<Edge> {
    let mut v = edges.to_vec();
    if absolute {
        v.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
    } else {
        v.sort_by(|a, b| b.score.total_cmp(&a.score));
    }
    v
}

/// Normalised faithfulness per fraction over the examples `idx` (with repeats, for the
/// bootstrap): (mean m(C) − mean m(∅)) / (mean m(full) − mean m(∅)).
pub fn faithfulness_of(
    metrics: &[Vec<f64>],
    clean: &[f64],
    corrupt: &[f64],
    idx: &[usize],
) -> Vec<f64> {
    let mean = |v: &[f64]| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64;
    let (mf, me) = (mean(clean), mean(corrupt));
    metrics
        .iter()
        .map(|mc| (mean(mc) - me) / (mf - me))
        .collect()
}

/// Trapezoid area of `ys` over `xs` (MIB's `area_under`).
pub fn trapezoid(xs: &[f64], ys: &[f64]) -> f64 {
    xs.windows(2)
        .zip(ys.windows(2))
        .map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0)
        .sum()
}

/// CPR and CMD of stored per-example metrics over the examples `idx`.
fn areas(
    fractions: &[f64],
    signed: &[Vec<f64>],
    abs: &[Vec<f64>],
    clean: &[f64],
    corrupt: &[f64],
    idx: &[usize],
) -> (f64, f64) {
    let fs = faithfulness_of(signed, clean, corrupt, idx);
    let fa: Vec<f64> = faithfulness_of(abs, clean, corrupt, idx)
        .iter()
        .map(|f| (1.0 - f).abs())
        .collect();
    (trapezoid(fractions, &fs), trapezoid(fractions, &fa))
}

/// 2.5% and 97.5% percentiles of the finite values (NaN when none).
fn percentile_interval(mut v: Vec<f64>) -> (f64, f64) {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = q * (v.len() - 1) as f64;
        let (i, t) = (pos.floor() as usize, pos - pos.floor());
        let j = (i + 1).min(v.len() - 1);
        v[i] * (1.0 - t) + v[j] * t
    };
    (at(0.025), at(0.975))
}

/// CPR and CMD with their bootstrap intervals (resampling the evaluation examples).
pub fn cpr_cmd(
    fractions: &[f64],
    signed: &[Vec<f64>],
    abs: &[Vec<f64>],
    clean: &[f64],
    corrupt: &[f64],
    resamples: usize,
    seed: u64,
) -> (Interval, Interval) {
    let f = |idx: &[usize]| areas(fractions, signed, abs, clean, corrupt, idx);
    bootstrap(clean.len(), resamples, seed, f)
}

/// CPR and CMD of one method minus another's (`a − b`), paired over the same evaluation
/// examples: each bootstrap resample draws the examples once for both, so the interval is that
/// of the difference (narrower than comparing two separate intervals).
#[allow(clippy::too_many_arguments)]
pub fn paired_difference(
    fractions: &[f64],
    a: (&[Vec<f64>], &[Vec<f64>]),
    b: (&[Vec<f64>], &[Vec<f64>]),
    clean: &[f64],
    corrupt: &[f64],
    resamples: usize,
    seed: u64,
) -> (Interval, Interval) {
    let f = |idx: &[usize]| {
        let (pa, ca) = areas(fractions, a.0, a.1, clean, corrupt, idx);
        let (pb, cb) = areas(fractions, b.0, b.1, clean, corrupt, idx);
        (pa - pb, ca - cb)
    };
    bootstrap(clean.len(), resamples, seed, f)
}

/// Two statistics of the `n` evaluation examples, on all of them and their 95% percentile
/// bootstrap intervals (the resamples are the same sequence for a given seed).
fn bootstrap(
    n: usize,
    resamples: usize,
    seed: u64,
    stat: impl Fn(&[usize]) -> (f64, f64),
) -> (Interval, Interval) {
    let all: Vec<usize> = (0..n).collect();
    let (p0, c0) = stat(&all);
    let mut rng = crate::rng::Rng::new(seed ^ 0xB007_5EED);
    let (mut bp, mut bm) = (Vec::new(), Vec::new());
    for _ in 0..resamples {
        let idx: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
        let (p, c) = stat(&idx);
        bp.push(p);
        bm.push(c);
    }
    let (plo, phi) = percentile_interval(bp);
    let (mlo, mhi) = percentile_interval(bm);
    (
        Interval {
            est: p0,
            lo: plo,
            hi: phi,
        },
        Interval {
            est: c0,
            lo: mlo,
            hi: mhi,
        },
    )
}
