//! Circuits over data sets, scored as MIB's circuit track scores them (`gim circuit --data`,
//! `%gim circuit --data`).
//!
//! - **Finding.** Each method's edge scores are the mean over the finding examples of the
//!   per-example edge attribution (EAP: `Σ (a_clean − a_corrupt) · ∂m/∂input`, with the metric
//!   m = logit(target) − logit(foil) at the last position), with the method's backward rules;
//!   EAP-IG averages the gradients over input embeddings interpolated from the corrupt to the
//!   clean prompt ([`edge_attribution_ig`]); `random` draws seeded uniform scores. The gradient
//!   methods of one example share its clean trace and corrupt run ([`edge_attributions`]).
//!   Sums are exact ([`EdgeSums`]), so any split into shards adds up to the same scores.
//! - **Circuits.** At each edge fraction (MIB's {0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100}% by
//!   default) the circuit is the top k = ⌊fraction · n_edges⌋ edges (as MIB's `int(pct · n)`),
//!   ranked as MIB ranks them: by **signed** score for CPR, by **|score|** for CMD (MIB's
//!   `abs-False` / `abs-True` runs). Unlike MIB, circuits are not pruned of edges that do not
//!   reach both the input and the logits.
//! - **Faithfulness.** Every edge outside the circuit gets the corrupt run's sender output
//!   ([`patch_edge_sets`]: all circuits of one example in batched forwards); m(∅) is the corrupt
//!   run, m(full) the clean run. As MIB's `evaluate_area_under_curve`, the metric is averaged
//!   over the evaluation examples first and normalised after:
//!   f = (mean m(C) − mean m(∅)) / (mean m(full) − mean m(∅)).
//! - **Scores.** CPR and CMD with bootstrap intervals ([`super::mib`]).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::edges::{edge_attributions, Edge, EdgeAttribution};
use super::edges_ig::edge_attribution_ig;
use super::evaluate::{assemble_report, evaluate_circuits, Rankings, StudyInfo};
use super::mib::{circuit_sizes, Interval};
use super::Problem;
use crate::attribution::Method;
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::GimRules;

/// MIB's edge fractions: 0.1% … 100%.
pub const MIB_FRACTIONS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// How a data-set hunt runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// One method's circuits on the evaluation examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodScores {
    pub method: String,
    /// area under faithfulness (circuits by signed score); higher is better
    pub cpr: Interval,
    /// area under |1 − faithfulness| (circuits by |score|); lower is better
    pub cmd: Interval,
    /// this method's CPR minus the first method's, paired over the evaluation examples (`None`
    /// for the first method)
    pub cpr_minus_first: Option<Interval>,
    /// this method's CMD minus the first method's, paired likewise
    pub cmd_minus_first: Option<Interval>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// 2⁶⁴: edge-score sums are kept in 64.64 fixed point.
const FIXED_ONE: f64 = 18_446_744_073_709_551_616.0;

/// One method's edge scores summed over examples, exactly: each score is rounded once to 64.64
/// fixed point (steps of 2⁻⁶⁴ ≈ 5·10⁻²⁰) and the integers are added, so a sum is the same in any
/// order and any split of the examples into shards (`--shard`, `gim merge`).
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeSums {
    pub method: Method,
    /// examples summed
    pub n: usize,
    /// per edge, in [`super::all_edges`] order (empty for `random`, which needs no examples)
    pub sums: Vec<i128>,
    pub seconds: f64,
}

impl EdgeSums {
    fn new(method: Method) -> Self {
        EdgeSums {
            method,
            n: 0,
            sums: Vec::new(),
            seconds: 0.0,
        }
    }

    fn add_scores(&mut self, edges: &[Edge]) -> Result<()> {
        if self.sums.is_empty() {
            self.sums = vec![0; edges.len()];
        }
        if self.sums.len() != edges.len() {
            return Err(GimError::input(
                "internal: edge counts differ between examples",
            ));
        }
        for (s, e) in self.sums.iter_mut().zip(edges) {
            if !e.score.is_finite() {
                return Err(GimError::input(format!(
                    "{}: edge {} → {} scored {} (not finite); check the model's weights and the prompts",
                    self.method.name(),
                    e.from.label(),
                    e.to.label(),
                    e.score
                )));
            }
            *s += (e.score * FIXED_ONE).round() as i128;
        }
        self.n += 1;
        Ok(())
    }

    /// Add another part's sums (same method, same edges).
    pub fn merge(&mut self, other: &EdgeSums) -> Result<()> {
        if other.method != self.method {
            return Err(GimError::input("parts list different methods"));
        }
        if self.sums.is_empty() {
            self.sums = vec![0; other.sums.len()];
        }
        if !other.sums.is_empty() && other.sums.len() != self.sums.len() {
            return Err(GimError::input("parts have different numbers of edges"));
        }
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a += b;
        }
        self.n += other.n;
        self.seconds += other.seconds;
        Ok(())
    }

    /// The mean scores, as edges of the model's graph.
    pub fn mean(&self, m: &LoadedModel, seed: u64) -> Result<Vec<Edge>> {
        let all = super::edges::all_edges(&m.model.cfg);
        if self.method == Method::Random {
            let mut rng = crate::rng::Rng::new(seed);
            return Ok(all
                .into_iter()
                .map(|(from, to)| Edge {
                    from,
                    to,
                    score: 2.0 * rng.unit() - 1.0,
                })
                .collect());
        }
        if self.n == 0 || self.sums.len() != all.len() {
            return Err(GimError::input(format!(
                "no edge scores for {} (found on {} examples)",
                self.method.name(),
                self.n
            )));
        }
        let n = self.n as f64;
        Ok(all
            .into_iter()
            .zip(&self.sums)
            .map(|((from, to), &s)| Edge {
                from,
                to,
                score: (s as f64 / FIXED_ONE) / n,
            })
            .collect())
    }
}

/// Every method's edge sums over `probs` (module docs): the gradient methods of one example share
/// its clean trace and corrupt run.
pub fn edge_sums(
    m: &LoadedModel,
    probs: &[Problem],
    opts: &DatasetOpts,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<EdgeSums>> {
    let mut out: Vec<EdgeSums> = opts.methods.iter().map(|&k| EdgeSums::new(k)).collect();
    let plain: Vec<usize> = (0..out.len())
        .filter(|&i| !matches!(out[i].method, Method::Random | Method::IntegratedGradients))
        .collect();
    let rule_sets: Vec<GimRules> = plain
        .iter()
        .map(|&i| out[i].method.rules(&opts.rules))
        .collect();
    for (e, p) in probs.iter().enumerate() {
        crate::interrupt::check()?;
        progress(Progress {
            stage: "find",
            done: e,
            total: probs.len(),
        });
        p.validate(m)?;
        if !plain.is_empty() {
            let t = Instant::now();
            let eas = edge_attributions(m, p, &rule_sets)?;
            let secs = t.elapsed().as_secs_f64() / plain.len() as f64;
            for (&i, ea) in plain.iter().zip(&eas) {
                out[i].add_scores(&ea.edges)?;
                out[i].seconds += secs;
            }
        }
        for s in out.iter_mut() {
            if s.method == Method::IntegratedGradients {
                let t = Instant::now();
                let rules = s.method.rules(&opts.rules);
                let ea = edge_attribution_ig(m, p, rules, opts.ig_steps)?;
                s.add_scores(&ea.edges)?;
                s.seconds += t.elapsed().as_secs_f64();
            }
        }
    }
    progress(Progress {
        stage: "find",
        done: probs.len(),
        total: probs.len(),
    });
    Ok(out)
}

/// Mean over `probs` of one method's per-example edge scores (edges in forward order; the
/// metrics are the means of the clean and corrupt metrics, NaN for `random`).
pub fn mean_edge_attribution(
    m: &LoadedModel,
    probs: &[Problem],
    method: Method,
    opts: &DatasetOpts,
    progress: &mut dyn FnMut(Progress),
) -> Result<EdgeAttribution> {
    if probs.is_empty() {
        return Err(GimError::input("no examples to find a circuit on"));
    }
    let one = DatasetOpts {
        methods: vec![method],
        ..opts.clone()
    };
    let sums = edge_sums(m, probs, &one, progress)?;
    let s = sums
        .first()
        .ok_or_else(|| GimError::input("internal: no sums"))?;
    Ok(EdgeAttribution {
        edges: s.mean(m, opts.seed)?,
        metric_clean: f64::NAN,
        metric_corrupt: f64::NAN,
        rules: method.rules(&opts.rules),
    })
}

pub(super) fn check_opts(o: &DatasetOpts) -> Result<()> {
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
    let sums = edge_sums(m, &data.find, opts, progress)?;
    let mut rankings = Vec::new();
    for s in &sums {
        rankings.push(Rankings::of(s.method, &s.mean(m, opts.seed)?));
    }
    let n_edges = super::edges::all_edges(&m.model.cfg).len();
    let sizes = circuit_sizes(&opts.fractions, n_edges);
    let rows = evaluate_circuits(m, &data.eval, &rankings, &sizes, progress)?;
    let tops: Vec<(Method, Vec<Edge>)> = rankings.into_iter().map(|r| (r.method, r.top)).collect();
    let info = StudyInfo {
        n_edges,
        n_find: data.find.len(),
        n_eval: data.eval.len(),
        n_skipped: data.skipped,
        split: data.how.clone(),
    };
    let secs: Vec<f64> = sums.iter().map(|s| s.seconds).collect();
    assemble_report(&info, opts, &tops, &secs, rows, t0.elapsed().as_secs_f64())
}
