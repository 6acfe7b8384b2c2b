//! Circuits over data sets, scored as MIB's circuit track scores them (`gim circuit --data`,
//! `%gim circuit --data`).
//!
//! - **Finding.** Each method's edge scores are the mean over the finding examples of the
//!   per-example edge attribution (EAP: `Σ (a_clean − a_corrupt) · ∂m/∂input`, with the metric
//!   m = logit(target) − logit(foil) at the last position), with the method's backward rules;
//!   EAP-IG averages the gradients over input embeddings interpolated from the corrupt to the
//!   clean prompt ([`edge_attribution_ig`]); `random` draws seeded uniform scores.
//! - **Circuits.** At each edge fraction (MIB's {0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100}% by
//!   default) the circuit is the top k = ⌊fraction · n_edges⌋ edges (as MIB's `int(pct · n)`),
//!   ranked as MIB ranks them: by **signed** score for CPR, by **|score|** for CMD (MIB's
//!   `abs-False` / `abs-True` runs). Unlike MIB, circuits are not pruned of edges that do not
//!   reach both the input and the logits.
//! - **Faithfulness.** Every edge outside the circuit gets the corrupt run's sender output
//!   ([`patch_edges`]); m(∅) is the corrupt run, m(full) the clean run. As MIB's
//!   `evaluate_area_under_curve`, the metric is averaged over the evaluation examples first and
//!   normalised after: f = (mean m(C) − mean m(∅)) / (mean m(full) − mean m(∅)).
//! - **Scores.** CPR = Σ trapezoids of f over the fractions (x = the fraction itself, not its
//!   log, from the first fraction to the last, as MIB), higher is better; CMD = the same area
//!   of |1 − f| over the |score| curve, lower is better. Each with a 95% percentile bootstrap
//!   interval: resample the evaluation examples with replacement (seeded), recompute the
//!   normalised curves and their areas from the stored per-example metrics.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::edge_patch::patch_edges;
use super::edges::{edge_attribution, Edge, EdgeAttribution, Receiver};
use super::edges_ig::edge_attribution_ig;
use super::{corrupt_acts, sender_acts, Node, Problem};
use crate::attribution::Method;
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::GimRules;

/// MIB's edge fractions: 0.1% … 100%.
pub const MIB_FRACTIONS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// How a data-set hunt runs.
#[derive(Debug, Clone)]
pub struct DatasetOpts {
    pub methods: Vec<Method>,
    /// the rules of the `gim` method
    pub rules: GimRules,
    /// EAP-IG steps (MIB: 5)
    pub ig_steps: usize,
    /// edge fractions in (0, 1], increasing (0 is allowed: every edge patched)
    pub fractions: Vec<f64>,
    /// bootstrap resamples for the intervals (0: none)
    pub bootstrap: usize,
    /// seed of the random method and of the bootstrap
    pub seed: u64,
}

impl Default for DatasetOpts {
    fn default() -> Self {
        DatasetOpts {
            methods: vec![Method::Gim, Method::Gradient, Method::Random],
            rules: GimRules::gim(),
            ig_steps: 5,
            fractions: MIB_FRACTIONS.to_vec(),
            bootstrap: 1000,
            seed: 0,
        }
    }
}

/// The examples: those that find the circuits, those that evaluate them.
#[derive(Debug, Clone)]
pub struct DataSplit {
    pub find: Vec<Problem>,
    pub eval: Vec<Problem>,
    /// lines of the data left out (`--filter`, `--limit`)
    pub skipped: usize,
    /// how the examples were split, for the report (`first 10 of 20 find, last 10 evaluate`)
    pub how: String,
}

/// A value and its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub est: f64,
    pub lo: f64,
    pub hi: f64,
}

/// One method's circuits on the evaluation examples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodScores {
    pub method: String,
    /// area under faithfulness (circuits by signed score); higher is better
    pub cpr: Interval,
    /// area under |1 − faithfulness| (circuits by |score|); lower is better
    pub cmd: Interval,
    /// faithfulness per fraction, circuits = top-k by signed score
    pub faithfulness_signed: Vec<f64>,
    /// faithfulness per fraction, circuits = top-k by |score|
    pub faithfulness_abs: Vec<f64>,
    /// per fraction, per evaluation example: m(circuit), circuits by signed score
    pub metrics_signed: Vec<Vec<f64>>,
    /// per fraction, per evaluation example: m(circuit), circuits by |score|
    pub metrics_abs: Vec<Vec<f64>>,
    /// the averaged edge scores, highest |score| first, at most 50
    pub top_edges: Vec<Edge>,
    pub seconds_find: f64,
    pub seconds_eval: f64,
}

/// A data-set hunt: every method's CPR and CMD on the evaluation examples (`--json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetReport {
    pub metric: String,
    pub n_edges: usize,
    pub n_find: usize,
    pub n_eval: usize,
    pub n_skipped: usize,
    pub split: String,
    pub fractions: Vec<f64>,
    /// edges kept at each fraction
    pub edges: Vec<usize>,
    pub ig_steps: usize,
    pub bootstrap: usize,
    pub seed: u64,
    /// per evaluation example: m(full) = the clean run, m(∅) = the corrupt run
    pub metric_clean: Vec<f64>,
    pub metric_corrupt: Vec<f64>,
    pub methods: Vec<MethodScores>,
    pub seconds: f64,
}

/// Where a long hunt is: a stage, and how far through it.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub stage: &'a str,
    pub done: usize,
    pub total: usize,
}

/// Mean over `probs` of one method's per-example edge scores (edges in forward order; the
/// metrics are the means of the clean and corrupt metrics).
pub fn mean_edge_attribution(
    m: &LoadedModel,
    probs: &[Problem],
    method: Method,
    opts: &DatasetOpts,
    progress: &mut dyn FnMut(Progress),
) -> Result<EdgeAttribution> {
    let first = probs
        .first()
        .ok_or_else(|| GimError::input("no examples to find a circuit on"))?;
    let rules = method.rules(&opts.rules);
    if method == Method::Random {
        // the edge set, from the graph alone
        let mut rng = crate::rng::Rng::new(opts.seed);
        let edges = super::edges::all_edges(&m.model.cfg)
            .into_iter()
            .map(|(from, to)| Edge {
                from,
                to,
                score: 2.0 * rng.unit() - 1.0,
            })
            .collect();
        first.validate(m)?;
        return Ok(EdgeAttribution {
            edges,
            metric_clean: f64::NAN,
            metric_corrupt: f64::NAN,
            rules,
        });
    }
    let stage = format!("find {}", method.name());
    let mut sum: Option<EdgeAttribution> = None;
    for (i, p) in probs.iter().enumerate() {
        crate::interrupt::check()?;
        progress(Progress {
            stage: &stage,
            done: i,
            total: probs.len(),
        });
        let ea = match method {
            Method::IntegratedGradients => edge_attribution_ig(m, p, rules, opts.ig_steps)?,
            _ => edge_attribution(m, p, rules)?,
        };
        sum = Some(match sum {
            None => ea,
            Some(mut acc) => {
                for (a, e) in acc.edges.iter_mut().zip(&ea.edges) {
                    a.score += e.score;
                }
                acc.metric_clean += ea.metric_clean;
                acc.metric_corrupt += ea.metric_corrupt;
                acc
            }
        });
    }
    progress(Progress {
        stage: &stage,
        done: probs.len(),
        total: probs.len(),
    });
    let mut acc = sum.ok_or_else(|| GimError::input("no examples to find a circuit on"))?;
    let n = probs.len() as f64;
    for e in &mut acc.edges {
        e.score /= n;
    }
    acc.metric_clean /= n;
    acc.metric_corrupt /= n;
    Ok(acc)
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
    let n = clean.len();
    let all: Vec<usize> = (0..n).collect();
    let (cpr, cmd) = areas(fractions, signed, abs, clean, corrupt, &all);
    let mut rng = crate::rng::Rng::new(seed ^ 0xB007_5EED);
    let (mut bp, mut bm) = (Vec::new(), Vec::new());
    for _ in 0..resamples {
        let idx: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
        let (p, c) = areas(fractions, signed, abs, clean, corrupt, &idx);
        bp.push(p);
        bm.push(c);
    }
    let (plo, phi) = percentile_interval(bp);
    let (mlo, mhi) = percentile_interval(bm);
    (
        Interval {
            est: cpr,
            lo: plo,
            hi: phi,
        },
        Interval {
            est: cmd,
            lo: mlo,
            hi: mhi,
        },
    )
}

fn check_opts(o: &DatasetOpts) -> Result<()> {
    if o.methods.is_empty() {
        return Err(GimError::input("--methods is empty"));
    }
    if o.fractions.len() < 2 {
        return Err(GimError::input("give at least two edge fractions"));
    }
    let ok = o
        .fractions
        .iter()
        .all(|f| f.is_finite() && (0.0..=1.0).contains(f))
        && o.fractions.windows(2).all(|w| w[0] < w[1]);
    if !ok {
        return Err(GimError::input(
            "edge fractions must increase and lie in [0, 100]%",
        ));
    }
    if o.ig_steps == 0 {
        return Err(GimError::input("--ig-steps must be at least 1"));
    }
    Ok(())
}

/// Find each method's circuits on `data.find` and score them on `data.eval` (module docs).
pub fn dataset_report(
    m: &LoadedModel,
    data: &DataSplit,
    opts: &DatasetOpts,
    progress: &mut dyn FnMut(Progress),
) -> Result<DatasetReport> {
    check_opts(opts)?;
    if data.eval.is_empty() {
        return Err(GimError::input("no examples to evaluate the circuits on"));
    }
    for p in data.find.iter().chain(&data.eval) {
        p.validate(m)?;
    }
    let t0 = Instant::now();
    // finding: averaged scores, then both rankings, per method
    struct Found {
        signed: Vec<(Node, Receiver)>,
        abs: Vec<(Node, Receiver)>,
        top: Vec<Edge>,
        seconds: f64,
    }
    let mut found = Vec::new();
    for &method in &opts.methods {
        let t = Instant::now();
        let ea = mean_edge_attribution(m, &data.find, method, opts, progress)?;
        let pairs = |v: Vec<Edge>| v.iter().map(|e| (e.from, e.to)).collect::<Vec<_>>();
        let abs = ranked_edges(&ea.edges, true);
        found.push(Found {
            signed: pairs(ranked_edges(&ea.edges, false)),
            top: abs.iter().take(50).copied().collect(),
            abs: pairs(abs),
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    let n_edges = found.first().map(|f| f.signed.len()).unwrap_or(0);
    let sizes = circuit_sizes(&opts.fractions, n_edges);
    let (nf, ne) = (opts.fractions.len(), data.eval.len());
    let mut metric_clean = Vec::with_capacity(ne);
    let mut metric_corrupt = Vec::with_capacity(ne);
    // [method][fraction][example]
    let mut signed = vec![vec![vec![0.0; ne]; nf]; found.len()];
    let mut abs = signed.clone();
    let mut eval_secs = vec![0.0; found.len()];
    for (e, p) in data.eval.iter().enumerate() {
        let clean = sender_acts(m, &p.clean)?;
        let corr = corrupt_acts(m, p, &clean)?;
        metric_clean.push(
            clean
                .metric(m, p)?
                .ok_or_else(|| GimError::input("internal: no hidden state"))?,
        );
        metric_corrupt.push(super::nodes::corrupt_metric(m, p, &corr)?);
        for (mi, f) in found.iter().enumerate() {
            crate::interrupt::check()?;
            progress(Progress {
                stage: "evaluate",
                done: e * found.len() + mi,
                total: ne * found.len(),
            });
            let t = Instant::now();
            for (fi, &k) in sizes.iter().enumerate() {
                let ms = patch_edges(m, p, &corr, &f.signed[k..])?;
                signed[mi][fi][e] = ms;
                // the whole graph and the empty circuit are the same under both rankings
                abs[mi][fi][e] = if k == 0 || k == n_edges {
                    ms
                } else {
                    patch_edges(m, p, &corr, &f.abs[k..])?
                };
            }
            eval_secs[mi] += t.elapsed().as_secs_f64();
        }
    }
    progress(Progress {
        stage: "evaluate",
        done: ne * found.len(),
        total: ne * found.len(),
    });
    let all: Vec<usize> = (0..ne).collect();
    let d = mean_of(&metric_clean) - mean_of(&metric_corrupt);
    if d.abs() < 1e-9 {
        return Err(GimError::input(
            "the mean clean and corrupt metrics are equal on the evaluation examples, so faithfulness is undefined; check the corrupt prompts change the prediction",
        ));
    }
    let mut methods = Vec::new();
    for (mi, f) in found.into_iter().enumerate() {
        let (cpr, cmd) = cpr_cmd(
            &opts.fractions,
            &signed[mi],
            &abs[mi],
            &metric_clean,
            &metric_corrupt,
            opts.bootstrap,
            opts.seed,
        );
        methods.push(MethodScores {
            method: opts.methods[mi].name(),
            cpr,
            cmd,
            faithfulness_signed: faithfulness_of(&signed[mi], &metric_clean, &metric_corrupt, &all),
            faithfulness_abs: faithfulness_of(&abs[mi], &metric_clean, &metric_corrupt, &all),
            metrics_signed: std::mem::take(&mut signed[mi]),
            metrics_abs: std::mem::take(&mut abs[mi]),
            top_edges: f.top,
            seconds_find: f.seconds,
            seconds_eval: eval_secs[mi],
        });
    }
    Ok(DatasetReport {
        metric: "logit(target) − logit(foil)".into(),
        n_edges,
        n_find: data.find.len(),
        n_eval: ne,
        n_skipped: data.skipped,
        split: data.how.clone(),
        fractions: opts.fractions.clone(),
        edges: sizes,
        ig_steps: opts.ig_steps,
        bootstrap: opts.bootstrap,
        seed: opts.seed,
        metric_clean,
        metric_corrupt,
        methods,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn mean_of(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}
