//! Faithfulness evaluation of token attributions: comprehensiveness and sufficiency per example
//! and method, and their means with 95% confidence intervals (GIM.md, "Faithfulness of token
//! attributions").
//!
//! ```no_run
//! use gim::attribution::{AttributeRequest, Method};
//! use gim::eval::{evaluate, read_examples, FaithfulnessOpts, Fields};
//! let m = gim::load("toy-ioi", &Default::default()).unwrap();
//! let data = read_examples("prompts.jsonl", &Fields::default()).unwrap();
//! let proto = AttributeRequest::new(vec![]);
//! let run = evaluate(&m, &data, &[Method::Gim, Method::Random], &proto, &FaithfulnessOpts::default(), |_| Ok(())).unwrap();
//! for s in &run.summary { println!("{} {:.3}", s.method, s.comprehensiveness.mean); }
//! ```

mod data;
mod metrics;

use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use data::{
    induction_examples, parse_line, read_examples, read_jsonl, text_field_of, EvalExample, Fields,
    JsonlRows, INDUCTION_SEGMENT,
};
pub use metrics::{
    faithfulness, n_replaced, normalised_mean, patched_rows, ranking, replaced, scores,
    Faithfulness, FaithfulnessOpts, Metric, SUFFICIENCY_RATIOS,
};

use crate::attribution::{attribute, AttributeRequest, Method, Objective};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;

/// One method on one example (a line of `gim eval --out`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleResult {
    pub method: String,
    /// what f is: logit, logit-diff or log-prob
    pub metric: Metric,
    /// index of the example in the data (after filtering and `--limit`)
    pub example: usize,
    pub comprehensiveness: f64,
    pub sufficiency: f64,
    /// f(x): the metric on the unpatched prompt (target logit, logit difference or log-probability)
    pub target_logit: f64,
    pub target: String,
    pub n_candidates: usize,
    pub comprehensiveness_drops: Vec<f64>,
    pub sufficiency_drops: Vec<f64>,
}

/// Mean and 95% confidence half-width (1.96 · sd / √n, sample sd) of the finite values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub ci95: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stat {
        let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return Stat {
                mean: f64::NAN,
                ci95: f64::NAN,
                n,
            };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let ci95 = if n < 2 {
            f64::NAN
        } else {
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            1.96 * var.sqrt() / (n as f64).sqrt()
        };
        Stat { mean, ci95, n }
    }
}

/// One method over all finished examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    pub method: String,
    /// higher is better
    pub comprehensiveness: Stat,
    /// lower is better
    pub sufficiency: Stat,
    /// mean normalised comprehensiveness drop after replacing the top k, k = 1.. (examples with
    /// fewer candidates drop out of the later means)
    pub comprehensiveness_curve: Vec<f64>,
}

/// Means per method, in the order methods first appear in `results`.
pub fn summarize(results: &[ExampleResult]) -> Vec<MethodSummary> {
    let mut names: Vec<&str> = Vec::new();
    for r in results {
        if !names.contains(&r.method.as_str()) {
            names.push(&r.method);
        }
    }
    names
        .iter()
        .map(|name| {
            let rs: Vec<&ExampleResult> = results.iter().filter(|r| r.method == *name).collect();
            let k_max = rs
                .iter()
                .map(|r| r.comprehensiveness_drops.len())
                .max()
                .unwrap_or(0);
            let curve = (0..k_max)
                .map(|k| {
                    Stat::of(rs.iter().filter_map(|r| {
                        r.comprehensiveness_drops
                            .get(k)
                            .map(|d| d / r.target_logit.abs())
                    }))
                    .mean
                })
                .collect();
            MethodSummary {
                method: name.to_string(),
                comprehensiveness: Stat::of(rs.iter().map(|r| r.comprehensiveness)),
                sufficiency: Stat::of(rs.iter().map(|r| r.sufficiency)),
                comprehensiveness_curve: curve,
            }
        })
        .collect()
}

/// The outcome of [`evaluate`]: every finished (method, example) and the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRun {
    pub model_type: String,
    /// what f is: logit, logit-diff or log-prob (the same for every example)
    pub metric: Metric,
    /// anything the reader must know about the metric (foils present but unused)
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
    pub methods: Vec<String>,
    pub n_examples: usize,
    /// examples finished for every method (the summary covers exactly these)
    pub n_done: usize,
    pub interrupted: bool,
    pub seconds: f64,
    pub summary: Vec<MethodSummary>,
    pub results: Vec<ExampleResult>,
}

/// The metric of a run: `opts.metric`, else logit-diff when every example has a foil, else logit;
/// and a note when some examples' foils go unused. Logit-diff without a foil on every example is
/// an error.
pub fn resolve_metric(
    examples: &[EvalExample],
    metric: Option<Metric>,
) -> Result<(Metric, Option<String>)> {
    let n = examples.len();
    let with = examples.iter().filter(|e| e.contrast.is_some()).count();
    let metric = match metric {
        Some(m) => m,
        None if n > 0 && with == n => Metric::LogitDiff,
        None => Metric::Logit,
    };
    if metric == Metric::LogitDiff && with < n {
        return Err(GimError::input(format!(
            "--metric logit-diff needs a foil on every example, but {} of {n} have none; add a \"foil\" (or \"contrast\") field, name it with --contrast-field, or use --metric logit",
            n - with
        )));
    }
    let note = (metric != Metric::LogitDiff && with > 0).then(|| {
        format!("{with} of {n} examples have a foil, which the {metric} metric does not use (--metric logit-diff uses it)")
    });
    Ok((metric, note))
}

/// Attribute every example with every method (settings from `proto`: rules, baseline, IG steps,
/// seed) and measure faithfulness with the metric of [`resolve_metric`] (`opts.metric`). Examples run one after another, all methods each, and
/// `on_example` gets each finished example's results (write them out there). An interrupt
/// ([`crate::interrupt`]) stops between steps and returns the finished examples with
/// `interrupted: true`; other errors name the example and method.
pub fn evaluate(
    m: &LoadedModel,
    examples: &[EvalExample],
    methods: &[Method],
    proto: &AttributeRequest,
    opts: &FaithfulnessOpts,
    mut on_example: impl FnMut(&[ExampleResult]) -> Result<()>,
) -> Result<EvalRun> {
    if methods.is_empty() {
        return Err(GimError::input("no methods to evaluate"));
    }
    let baseline = proto.baseline.resolve(m)?.ok_or_else(|| {
        GimError::input(
            "faithfulness replaces tokens by a baseline token; a zero baseline has none",
        )
    })?;
    let (metric, note) = resolve_metric(examples, opts.metric)?;
    let t0 = Instant::now();
    let mut results = Vec::new();
    let mut n_done = 0;
    let mut interrupted = false;
    'examples: for (i, ex) in examples.iter().enumerate() {
        let ids = m.tok.encode(&ex.prompt, true)?;
        let mut these = Vec::with_capacity(methods.len());
        for &method in methods {
            let mut req = proto.clone();
            req.ids = ids.clone();
            req.target = ex.target.clone();
            req.contrast = match metric {
                Metric::LogitDiff => ex.contrast.clone(),
                Metric::Logit | Metric::LogProb => None,
            };
            req.method = method;
            req.objective = match metric {
                Metric::LogProb => Objective::LogProb,
                Metric::Logit | Metric::LogitDiff => Objective::Logit,
            };
            let step = attribute(m, &req)
                .and_then(|a| faithfulness(m, &a, Some(baseline), opts).map(|f| (a, f)));
            let (a, f) = match step {
                Ok(x) => x,
                Err(GimError::Interrupted) => {
                    interrupted = true;
                    break 'examples;
                }
                Err(e) => {
                    return Err(GimError::input(format!(
                        "example {i} ({:?}), method {}: {}",
                        ex.prompt,
                        method.name(),
                        e.to_string().lines().next().unwrap_or("")
                    )))
                }
            };
            these.push(ExampleResult {
                method: method.name().to_string(),
                metric: f.metric,
                example: i,
                comprehensiveness: f.comprehensiveness,
                sufficiency: f.sufficiency,
                target_logit: f.target_logit,
                target: a.target.clone(),
                n_candidates: f.n_candidates,
                comprehensiveness_drops: f.comprehensiveness_drops,
                sufficiency_drops: f.sufficiency_drops,
            });
        }
        on_example(&these)?;
        results.extend(these);
        n_done += 1;
        if crate::interrupt::requested() {
            interrupted = i + 1 < examples.len();
            break;
        }
    }
    Ok(EvalRun {
        model_type: m.model.cfg.model_type.clone(),
        metric,
        note,
        methods: methods.iter().map(|m| m.name().to_string()).collect(),
        n_examples: examples.len(),
        n_done,
        interrupted,
        seconds: t0.elapsed().as_secs_f64(),
        summary: summarize(&results),
        results,
    })
}
