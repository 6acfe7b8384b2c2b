//! A data-set hunt split over machines: `gim circuit --data … --shard I/N --out part.json`
//! computes one slice of the examples, `gim merge` adds the parts up.
//!
//! Two stages, as the circuits depend on every finding example:
//! 1. **find**: shard I sums each method's edge scores over its slice of the finding examples
//!    ([`FindPart`]); `gim merge` adds the sums into the found scores ([`FoundScores`]).
//! 2. **evaluate** (`--scores found.json`): shard I patches the circuits on its slice of the
//!    evaluation examples ([`EvalPart`]); `gim merge` joins the slices into the report.
//!
//! The merged report equals a single run's exactly: edge-score sums are integers
//! ([`EdgeSums`]), each evaluation example is computed alone, and metrics travel as IEEE bit
//! patterns. Every part carries the study's key (model, options, data); parts of different
//! studies, a missing or repeated shard are one-line errors.

use serde::{Deserialize, Serialize};

use super::dataset::{
    check_opts, edge_sums, DataSplit, DatasetOpts, DatasetReport, EdgeSums, Progress,
};
use super::edges::Edge;
use super::evaluate::{assemble_report, evaluate_circuits, EvalRows, Rankings, StudyInfo};
use super::mib::circuit_sizes;
use crate::attribution::Method;
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;

/// `--shard I/N`: slice I (0-based, as Slurm's `SLURM_ARRAY_TASK_ID` and Kubernetes'
/// `JOB_COMPLETION_INDEX`) of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || {
            GimError::input(format!(
                "--shard {s:?}: use I/N with 0 ≤ I < N, e.g. 0/4 (I is the array task's index)"
            ))
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The whole set as one shard.
    pub fn whole() -> Shard {
        Shard { index: 0, count: 1 }
    }

    /// This shard's examples of `n`: contiguous, in file order.
    pub fn range(&self, n: usize) -> std::ops::Range<usize> {
        (n * self.index / self.count)..(n * (self.index + 1) / self.count)
    }
}

/// What every part of one study must agree on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyKey {
    /// the model's name (its path differs between machines)
    pub model: String,
    pub opts: DatasetOpts,
    pub info: StudyInfo,
}

impl StudyKey {
    pub fn new(m: &LoadedModel, data: &DataSplit, opts: &DatasetOpts) -> Result<StudyKey> {
        check_opts(opts)?;
        Ok(StudyKey {
            // the name, not the path: array tasks on other machines find the model elsewhere
            model: m.name.clone(),
            opts: opts.clone(),
            info: StudyInfo {
                n_edges: super::edges::all_edges(&m.model.cfg).len(),
                n_find: data.find.len(),
                n_eval: data.eval.len(),
                n_skipped: data.skipped,
                split: data.how.clone(),
            },
        })
    }
}

/// One method's exact sums, as text (i128 has no JSON number).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SumsText {
    pub method: Method,
    pub n: usize,
    pub seconds: f64,
    /// per edge (all_edges order): the 64.64 fixed-point sum, in decimal
    pub sums: Vec<String>,
}

impl SumsText {
    fn of(s: &EdgeSums) -> Self {
        SumsText {
            method: s.method,
            n: s.n,
            seconds: s.seconds,
            sums: s.sums.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn sums(&self) -> Result<EdgeSums> {
        let sums = self
            .sums
            .iter()
            .map(|t| {
                t.parse::<i128>().map_err(|_| {
                    GimError::input(format!("a part's edge sum {t:?} is not an integer"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EdgeSums {
            method: self.method,
            n: self.n,
            sums,
            seconds: self.seconds,
        })
    }
}

/// A finding shard's sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindPart {
    pub key: StudyKey,
    pub shard: Shard,
    pub methods: Vec<SumsText>,
}

/// The merged finding stage: every method's sums over all finding examples (`--scores`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoundScores {
    pub key: StudyKey,
    pub methods: Vec<SumsText>,
}

/// An evaluation shard's rows; f64 values as their IEEE bits, so that merging is exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPart {
    pub key: StudyKey,
    pub shard: Shard,
    /// per method: the 50 top edges and the finding time (from the scores)
    pub top_edges: Vec<(Method, Vec<Edge>)>,
    pub seconds_find: Vec<f64>,
    pub metric_clean: Vec<u64>,
    pub metric_corrupt: Vec<u64>,
    /// `[method][fraction][example]`
    pub signed: Vec<Vec<Vec<u64>>>,
    pub abs: Vec<Vec<Vec<u64>>>,
    pub seconds: Vec<f64>,
    pub seconds_total: f64,
}

/// A part file of either stage (`gim merge` reads any of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "part", rename_all = "kebab-case")]
pub enum Part {
    Find(FindPart),
    Scores(FoundScores),
    Eval(EvalPart),
}

/// The finding stage on one shard of `data.find`.
pub fn find_part(
    m: &LoadedModel,
    data: &DataSplit,
    opts: &DatasetOpts,
    shard: Shard,
    progress: &mut dyn FnMut(Progress),
) -> Result<FindPart> {
    let key = StudyKey::new(m, data, opts)?;
    let sums = edge_sums(m, &data.find[shard.range(data.find.len())], opts, progress)?;
    Ok(FindPart {
        key,
        shard,
        methods: sums.iter().map(SumsText::of).collect(),
    })
}

/// Check that `parts` (their shards) are each of `0..N` once, and of one study.
fn check_parts<'a>(parts: impl Iterator<Item = (&'a StudyKey, Shard)>) -> Result<&'a StudyKey> {
    let mut key: Option<&StudyKey> = None;
    let mut seen: Vec<bool> = Vec::new();
    for (k, s) in parts {
        match key {
            None => {
                key = Some(k);
                seen = vec![false; s.count];
            }
            Some(k0) if k0 != k => {
                return Err(GimError::input(format!(
                    "the parts come from different studies (model, options or data differ: {} vs {}); merge the parts of one run",
                    k0.model, k.model
                )))
            }
            _ => {}
        }
        if s.count != seen.len() || s.index >= s.count {
            return Err(GimError::input(format!(
                "shard {}/{} does not fit shards of {}",
                s.index,
                s.count,
                seen.len()
            )));
        }
        if seen[s.index] {
            return Err(GimError::input(format!(
                "shard {}/{} is given twice",
                s.index, s.count
            )));
        }
        seen[s.index] = true;
    }
    let key = key.ok_or_else(|| GimError::input("no parts to merge"))?;
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(GimError::input(format!(
            "shard {i}/{} is missing: give every part",
            seen.len()
        )));
    }
    Ok(key)
}

/// Add the finding parts up.
pub fn merge_find(parts: &[FindPart]) -> Result<FoundScores> {
    let key = check_parts(parts.iter().map(|p| (&p.key, p.shard)))?;
    let mut total: Vec<EdgeSums> = Vec::new();
    for p in parts {
        for (i, s) in p.methods.iter().enumerate() {
            let s = s.sums()?;
            match total.get_mut(i) {
                Some(t) => t.merge(&s)?,
                None => total.push(s),
            }
        }
    }
    Ok(FoundScores {
        key: key.clone(),
        methods: total.iter().map(SumsText::of).collect(),
    })
}

/// Each method's rankings from the found scores.
fn rankings(m: &LoadedModel, found: &FoundScores) -> Result<Vec<Rankings>> {
    found
        .methods
        .iter()
        .map(|s| {
            Ok(Rankings::of(
                s.method,
                &s.sums()?.mean(m, found.key.opts.seed)?,
            ))
        })
        .collect()
}

/// The evaluation stage on one shard of `data.eval`, with the circuits of `found`.
pub fn eval_part(
    m: &LoadedModel,
    data: &DataSplit,
    found: &FoundScores,
    shard: Shard,
    progress: &mut dyn FnMut(Progress),
) -> Result<EvalPart> {
    let t0 = std::time::Instant::now();
    let opts = &found.key.opts;
    let mut key = StudyKey::new(m, data, opts)?;
    if key.model != found.key.model || key.info.n_edges != found.key.info.n_edges {
        return Err(GimError::input(format!(
            "the scores were found on {}, not on {}: load the same model",
            found.key.model, key.model
        )));
    }
    // the finding side of the study is the scores'
    key.info.n_find = found.key.info.n_find;
    let rk = rankings(m, found)?;
    let sizes = circuit_sizes(&opts.fractions, key.info.n_edges);
    let rows = evaluate_circuits(
        m,
        &data.eval[shard.range(data.eval.len())],
        &rk,
        &sizes,
        progress,
    )?;
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
    let bits3 = |v: &[Vec<Vec<f64>>]| {
        v.iter()
            .map(|f| f.iter().map(|e| bits(e)).collect())
            .collect()
    };
    Ok(EvalPart {
        key,
        shard,
        top_edges: rk.iter().map(|r| (r.method, r.top.clone())).collect(),
        seconds_find: found.methods.iter().map(|s| s.seconds).collect(),
        metric_clean: bits(&rows.metric_clean),
        metric_corrupt: bits(&rows.metric_corrupt),
        signed: bits3(&rows.signed),
        abs: bits3(&rows.abs),
        seconds: rows.seconds,
        seconds_total: t0.elapsed().as_secs_f64(),
    })
}

/// Join the evaluation parts (in shard order) into the report.
pub fn merge_eval(parts: &[EvalPart]) -> Result<DatasetReport> {
    let key = check_parts(parts.iter().map(|p| (&p.key, p.shard)))?;
    let mut order: Vec<&EvalPart> = parts.iter().collect();
    order.sort_by_key(|p| p.shard.index);
    let first = order[0];
    let (nm, nf) = (first.signed.len(), key.opts.fractions.len());
    let f = f64::from_bits;
    let mut rows = EvalRows {
        metric_clean: Vec::new(),
        metric_corrupt: Vec::new(),
        signed: vec![vec![Vec::new(); nf]; nm],
        abs: vec![vec![Vec::new(); nf]; nm],
        seconds: vec![0.0; nm],
    };
    let mut seconds = 0.0;
    for p in &order {
        let ne = p.metric_clean.len();
        let shaped = |v: &Vec<Vec<Vec<u64>>>| {
            v.len() == nm
                && v.iter()
                    .all(|fr| fr.len() == nf && fr.iter().all(|e| e.len() == ne))
        };
        if p.metric_corrupt.len() != ne || !shaped(&p.signed) || !shaped(&p.abs) {
            return Err(GimError::input(format!(
                "part {}/{} is malformed (its rows do not match its methods and fractions)",
                p.shard.index, p.shard.count
            )));
        }
        rows.metric_clean
            .extend(p.metric_clean.iter().map(|&b| f(b)));
        rows.metric_corrupt
            .extend(p.metric_corrupt.iter().map(|&b| f(b)));
        for mi in 0..nm {
            for fi in 0..nf {
                rows.signed[mi][fi].extend(p.signed[mi][fi].iter().map(|&b| f(b)));
                rows.abs[mi][fi].extend(p.abs[mi][fi].iter().map(|&b| f(b)));
            }
            rows.seconds[mi] += p.seconds.get(mi).copied().unwrap_or(0.0);
        }
        seconds += p.seconds_total;
    }
    let secs_find = &first.seconds_find;
    seconds += secs_find.iter().sum::<f64>();
    assemble_report(
        &key.info,
        &key.opts,
        &first.top_edges,
        secs_find,
        rows,
        seconds,
    )
}
