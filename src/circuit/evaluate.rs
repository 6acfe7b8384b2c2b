//! The evaluation stage of a data-set hunt: every method's circuits patched on each evaluation
//! example (all circuits of one example in batched forwards), and the report assembled from
//! the per-example metrics (faithfulness curves, CPR and CMD with intervals).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::dataset::{DatasetOpts, DatasetReport, MethodScores, Progress};
use super::edge_patch::patch_edge_sets;
use super::edges::{Edge, Receiver};
use super::mib::{circuit_sizes, cpr_cmd, faithfulness_of, paired_difference, ranked_edges};
use super::{corrupt_acts, sender_acts, Node, Problem};
use crate::attribution::Method;
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;

/// One method's circuits: its edges ranked both ways (as sender/receiver pairs).
pub struct Rankings {
    pub method: Method,
    pub signed: Vec<(Node, Receiver)>,
    pub abs: Vec<(Node, Receiver)>,
    /// the 50 highest-|score| edges
    pub top: Vec<Edge>,
}

impl Rankings {
    pub fn of(method: Method, edges: &[Edge]) -> Self {
        let pairs = |v: Vec<Edge>| v.iter().map(|e| (e.from, e.to)).collect::<Vec<_>>();
        let abs = ranked_edges(edges, true);
        Rankings {
            method,
            signed: pairs(ranked_edges(edges, false)),
            top: abs.iter().take(50).copied().collect(),
            abs: pairs(abs),
        }
    }
}

/// Per evaluation example: m(full), m(∅) and, per method and fraction, m(circuit) both ways.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRows {
    pub metric_clean: Vec<f64>,
    pub metric_corrupt: Vec<f64>,
    /// `[method][fraction][example]`
    pub signed: Vec<Vec<Vec<f64>>>,
    pub abs: Vec<Vec<Vec<f64>>>,
    /// per method
    pub seconds: Vec<f64>,
}

/// Patch every circuit of every method on each of `probs` (the circuits of one example run as
/// batched forwards).
pub fn evaluate_circuits(
    m: &LoadedModel,
    probs: &[Problem],
    rankings: &[Rankings],
    sizes: &[usize],
    progress: &mut dyn FnMut(Progress),
) -> Result<EvalRows> {
    let (nm, nf, ne) = (rankings.len(), sizes.len(), probs.len());
    let mut rows = EvalRows {
        metric_clean: Vec::with_capacity(ne),
        metric_corrupt: Vec::with_capacity(ne),
        signed: vec![vec![vec![0.0; ne]; nf]; nm],
        abs: vec![vec![vec![0.0; ne]; nf]; nm],
        seconds: vec![0.0; nm],
    };
    for (e, p) in probs.iter().enumerate() {
        crate::interrupt::check()?;
        progress(Progress {
            stage: "evaluate",
            done: e,
            total: ne,
        });
        p.validate(m)?;
        let t = Instant::now();
        let clean = sender_acts(m, &p.clean)?;
        let corr = corrupt_acts(m, p, &clean)?;
        let mc = clean
            .metric(m, p)?
            .ok_or_else(|| GimError::input("internal: no hidden state"))?;
        rows.metric_clean.push(mc);
        rows.metric_corrupt
            .push(super::nodes::corrupt_metric(m, p, &corr)?);
        // (method, fraction, absolute?) of each set to patch; the whole graph is the clean run,
        // and the empty circuit is the same under both rankings
        let mut slots: Vec<(usize, usize, bool)> = Vec::new();
        let mut sets: Vec<&[(Node, Receiver)]> = Vec::new();
        for (mi, r) in rankings.iter().enumerate() {
            for (fi, &k) in sizes.iter().enumerate() {
                if k >= r.signed.len() {
                    rows.signed[mi][fi][e] = mc;
                    rows.abs[mi][fi][e] = mc;
                    continue;
                }
                slots.push((mi, fi, false));
                sets.push(&r.signed[k..]);
                if k > 0 {
                    slots.push((mi, fi, true));
                    sets.push(&r.abs[k..]);
                }
            }
        }
        let ms = patch_edge_sets(m, p, &corr, &sets)?;
        for (&(mi, fi, absolute), v) in slots.iter().zip(ms) {
            if absolute {
                rows.abs[mi][fi][e] = v;
            } else {
                rows.signed[mi][fi][e] = v;
                if sizes[fi] == 0 {
                    rows.abs[mi][fi][e] = v;
                }
            }
        }
        let secs = t.elapsed().as_secs_f64() / nm.max(1) as f64;
        for s in rows.seconds.iter_mut() {
            *s += secs;
        }
    }
    progress(Progress {
        stage: "evaluate",
        done: ne,
        total: ne,
    });
    Ok(rows)
}

/// What a report says about its data, beside the scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyInfo {
    pub n_edges: usize,
    pub n_find: usize,
    pub n_eval: usize,
    pub n_skipped: usize,
    pub split: String,
}

/// The report from the found rankings and the evaluation rows: faithfulness curves, CPR and CMD
/// with their intervals.
pub fn assemble_report(
    info: &StudyInfo,
    opts: &DatasetOpts,
    top_edges: &[(Method, Vec<Edge>)],
    seconds_find: &[f64],
    rows: EvalRows,
    seconds: f64,
) -> Result<DatasetReport> {
    let ne = rows.metric_clean.len();
    if ne == 0 {
        return Err(GimError::input("no examples to evaluate the circuits on"));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    if (mean(&rows.metric_clean) - mean(&rows.metric_corrupt)).abs() < 1e-9 {
        return Err(GimError::input(
            "the mean clean and corrupt metrics are equal on the evaluation examples, so faithfulness is undefined; check the corrupt prompts change the prediction",
        ));
    }
    let all: Vec<usize> = (0..ne).collect();
    let EvalRows {
        metric_clean,
        metric_corrupt,
        mut signed,
        mut abs,
        seconds: eval_secs,
    } = rows;
    let first_signed = signed.first().cloned().unwrap_or_default();
    let first_abs = abs.first().cloned().unwrap_or_default();
    let mut methods = Vec::new();
    for (mi, (method, top)) in top_edges.iter().enumerate() {
        let (cpr, cmd) = cpr_cmd(
            &opts.fractions,
            &signed[mi],
            &abs[mi],
            &metric_clean,
            &metric_corrupt,
            opts.bootstrap,
            opts.seed,
        );
        let (cpr_minus_first, cmd_minus_first) = if mi == 0 {
            (None, None)
        } else {
            let (p, c) = paired_difference(
                &opts.fractions,
                (&signed[mi], &abs[mi]),
                (&first_signed, &first_abs),
                &metric_clean,
                &metric_corrupt,
                opts.bootstrap,
                opts.seed,
            );
            (Some(p), Some(c))
        };
        methods.push(MethodScores {
            method: method.name(),
            cpr,
            cmd,
            cpr_minus_first,
            cmd_minus_first,
            faithfulness_signed: faithfulness_of(&signed[mi], &metric_clean, &metric_corrupt, &all),
            faithfulness_abs: faithfulness_of(&abs[mi], &metric_clean, &metric_corrupt, &all),
            metrics_signed: std::mem::take(&mut signed[mi]),
            metrics_abs: std::mem::take(&mut abs[mi]),
            top_edges: top.clone(),
            seconds_find: seconds_find.get(mi).copied().unwrap_or(0.0),
            seconds_eval: eval_secs.get(mi).copied().unwrap_or(0.0),
        });
    }
    Ok(DatasetReport {
        metric: "logit(target) − logit(foil)".into(),
        n_edges: info.n_edges,
        n_find: info.n_find,
        n_eval: ne,
        n_skipped: info.n_skipped,
        split: info.split.clone(),
        fractions: opts.fractions.clone(),
        edges: circuit_sizes(&opts.fractions, info.n_edges),
        ig_steps: opts.ig_steps,
        bootstrap: opts.bootstrap,
        seed: opts.seed,
        metric_clean,
        metric_corrupt,
        methods,
        seconds,
    })
}
