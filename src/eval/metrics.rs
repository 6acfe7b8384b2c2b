//! Comprehensiveness and sufficiency of one token attribution (GIM.md, "Faithfulness of token
//! attributions"), computed from batched, gradient-free forward passes over patched prompts.

use candle_core::{DType, IndexOp};
use serde::{Deserialize, Serialize};

use crate::attribution::Attribution;
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::{ForwardOpts, Positions};

/// The paper's sufficiency ratios: fractions of the candidate tokens replaced, least important first.
pub const SUFFICIENCY_RATIOS: [f64; 5] = [0.5, 0.8, 0.9, 0.95, 0.99];

/// The score `f` whose drops faithfulness measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// the target's logit
    Logit,
    /// logit(target) − logit(foil): needs a foil on every example
    LogitDiff,
    /// log softmax of the target
    LogProb,
}

impl Metric {
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Logit => "logit",
            Metric::LogitDiff => "logit-diff",
            Metric::LogProb => "log-prob",
        }
    }

    /// `f` in words (table footnotes, chart subtitles).
    pub fn formula(&self) -> &'static str {
        match self {
            Metric::Logit => "f = logit(target)",
            Metric::LogitDiff => "f = logit(target) − logit(foil)",
            Metric::LogProb => "f = log p(target)",
        }
    }

    /// The metric of an attribution's objective (`logit`, `logit-diff`, `log-prob`).
    pub fn of_objective(objective: &str) -> Option<Metric> {
        match objective {
            "logit" => Some(Metric::Logit),
            "logit-diff" => Some(Metric::LogitDiff),
            "log-prob" => Some(Metric::LogProb),
            _ => None,
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the metrics are computed.
#[derive(Debug, Clone, PartialEq)]
pub struct FaithfulnessOpts {
    /// Most top-ranked tokens replaced for comprehensiveness (the paper: 50).
    pub max_steps: usize,
    /// Fractions of candidates replaced for sufficiency.
    pub ratios: Vec<f64>,
    /// Patched prompts per forward pass.
    pub batch_size: usize,
    /// The metric of [`crate::eval::evaluate`] (`None`: logit-diff when every example has a
    /// foil, else logit). [`faithfulness`] itself follows the attribution's objective.
    pub metric: Option<Metric>,
}

impl Default for FaithfulnessOpts {
    fn default() -> Self {
        FaithfulnessOpts {
            max_steps: 50,
            ratios: SUFFICIENCY_RATIOS.to_vec(),
            batch_size: 32,
            metric: None,
        }
    }
}

/// Faithfulness of one attribution.
///
/// `f` is the attribution's objective at its position: the target logit (`logit`),
/// logit(target) − logit(contrast) (`logit-diff`), or the target's log-probability (`log-prob`,
/// minus the contrast's with a contrast). Drops are `f(x) − f(x patched)`. Both scores are
/// **`mean(drops) / |f(x)|`**: dividing by the full score makes examples with large and small
/// logits weigh alike (a 2-logit drop means little when `f(x)` = 40 and much when it is 3), while
/// the absolute value keeps the sign of a drop meaningful when a logit difference is negative.
/// When `|f(x)| < 1e-6` the normalisation is undefined and both scores are NaN (left out of means).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Faithfulness {
    /// what `f` is
    pub metric: Metric,
    /// mean drop over k = 1..K top-ranked tokens replaced, / |f(x)| (higher is better)
    pub comprehensiveness: f64,
    /// mean drop over the sufficiency ratios, least important replaced, / |f(x)| (lower is better)
    pub sufficiency: f64,
    /// f(x): the unpatched target logit (or logit difference)
    pub target_logit: f64,
    /// tokens that may be replaced (all but the first and the last)
    pub n_candidates: usize,
    /// raw drop after replacing the top k, k = 1..K
    pub comprehensiveness_drops: Vec<f64>,
    /// raw drop per sufficiency ratio
    pub sufficiency_drops: Vec<f64>,
}

/// Candidate positions (first and last excluded) ranked by attribution, highest first; ties
/// (and NaN scores, ranked last) keep position order.
pub fn ranking(scores: &[f64]) -> Vec<usize> {
    let n = scores.len();
    let mut c: Vec<usize> = if n > 2 { (1..n - 1).collect() } else { vec![] };
    let key = |i: usize| {
        if scores[i].is_nan() {
            f64::NEG_INFINITY
        } else {
            scores[i]
        }
    };
    c.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
    c
}

/// How many of `n` candidates a sufficiency ratio replaces: ⌊ratio · n⌋ (so a ratio below 1
/// always keeps at least one candidate when n ≥ 1).
pub fn n_replaced(ratio: f64, n: usize) -> usize {
    ((ratio * n as f64 + 1e-9).floor() as usize).min(n)
}

/// `ids` with `positions` replaced by `baseline`.
pub fn replaced(ids: &[u32], positions: &[usize], baseline: u32) -> Vec<u32> {
    let mut r = ids.to_vec();
    for &p in positions {
        r[p] = baseline;
    }
    r
}

/// The patched prompts: the unpatched prompt, then top-k replaced for k = 1..K, then the least
/// important replaced per ratio. Returns (rows, K).
pub fn patched_rows(
    ids: &[u32],
    rank: &[usize],
    baseline: u32,
    opts: &FaithfulnessOpts,
) -> (Vec<Vec<u32>>, usize) {
    let n = rank.len();
    let k_max = opts.max_steps.min(n);
    let mut rows = vec![ids.to_vec()];
    for k in 1..=k_max {
        rows.push(replaced(ids, &rank[..k], baseline));
    }
    for &r in &opts.ratios {
        let q = n_replaced(r, n);
        rows.push(replaced(ids, &rank[n - q..], baseline));
    }
    (rows, k_max)
}

/// f for each row (no gradient) at `position`: the target logit, minus the contrast logit if
/// any; with `log_prob`, the target's log-probability (minus the contrast's).
pub fn scores(
    m: &LoadedModel,
    rows: &[Vec<u32>],
    position: usize,
    target: u32,
    contrast: Option<u32>,
    log_prob: bool,
    batch_size: usize,
) -> Result<Vec<f64>> {
    let v = m.model.cfg.vocab_size;
    if let Some(&bad) = [Some(target), contrast]
        .iter()
        .flatten()
        .find(|&&i| i as usize >= v)
    {
        return Err(GimError::input(format!(
            "token id {bad} is outside the vocabulary (size {v})"
        )));
    }
    // the logit metrics need only the target's (and contrast's) rows of the unembedding
    let mut cols = vec![target];
    cols.extend(contrast);
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        crate::interrupt::check()?;
        let e = m.model.embed_ids(chunk)?;
        let mut fo = ForwardOpts {
            positions: Positions::At(vec![position]),
            ..Default::default()
        };
        let h = m.model.forward_hidden(&e, &mut fo)?;
        if !log_prob {
            let l = m.model.unembed_rows(&h, &cols)?.i((.., 0))?; // [b, cols]
            let l: Vec<Vec<f64>> = l.to_dtype(DType::F64)?.to_vec2()?;
            out.extend(l.iter().map(|r| r[0] - r.get(1).copied().unwrap_or(0.0)));
            continue;
        }
        let l: Vec<Vec<f64>> = m
            .model
            .unembed(&h)?
            .i((.., 0))?
            .to_dtype(DType::F64)?
            .to_vec2()?;
        for r in &l {
            let max = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + r.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            let lp = |i: u32| r[i as usize] - lse;
            out.push(lp(target) - contrast.map_or(0.0, lp));
        }
    }
    Ok(out)
}

/// `mean(drops) / |f|` (NaN when `|f|` < 1e-6 or there are no drops).
pub fn normalised_mean(drops: &[f64], f: f64) -> f64 {
    if drops.is_empty() || f.abs() < 1e-6 {
        return f64::NAN;
    }
    drops.iter().sum::<f64>() / drops.len() as f64 / f.abs()
}

/// Comprehensiveness and sufficiency of `a` on `m`, replacing tokens by `baseline_id` (default:
/// the attribution's own baseline token).
pub fn faithfulness(
    m: &LoadedModel,
    a: &Attribution,
    baseline_id: Option<u32>,
    opts: &FaithfulnessOpts,
) -> Result<Faithfulness> {
    let metric = Metric::of_objective(&a.objective).ok_or_else(|| {
        GimError::input(format!(
            "faithfulness cannot measure the objective `{}`",
            a.objective
        ))
    })?;
    if a.note.is_some() {
        return Err(GimError::input(format!(
            "faithfulness is measured on single-token targets; the target {:?} is several tokens (teacher-forced)",
            a.target
        )));
    }
    if a.attributions.len() != a.token_ids.len() {
        return Err(GimError::input(
            "the attribution has a different number of scores than tokens",
        ));
    }
    let b = baseline_id.or(a.baseline_id).ok_or_else(|| {
        GimError::input(
            "faithfulness replaces tokens by a baseline token; a zero baseline has none",
        )
    })?;
    let rank = ranking(&a.attributions);
    if rank.is_empty() {
        return Err(GimError::input(format!(
            "the prompt has {} tokens; faithfulness needs at least 3 (first and last are never replaced)",
            a.token_ids.len()
        )));
    }
    let (rows, k_max) = patched_rows(&a.token_ids, &rank, b, opts);
    let f = scores(
        m,
        &rows,
        a.position,
        a.target_id,
        a.contrast_id,
        metric == Metric::LogProb,
        opts.batch_size,
    )?;
    let f0 = f[0];
    let comp: Vec<f64> = f[1..=k_max].iter().map(|v| f0 - v).collect();
    let suff: Vec<f64> = f[k_max + 1..].iter().map(|v| f0 - v).collect();
    Ok(Faithfulness {
        metric,
        comprehensiveness: normalised_mean(&comp, f0),
        sufficiency: normalised_mean(&suff, f0),
        target_logit: f0,
        n_candidates: rank.len(),
        comprehensiveness_drops: comp,
        sufficiency_drops: suff,
    })
}
