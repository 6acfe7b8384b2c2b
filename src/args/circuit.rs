//! `gim circuit` / `%gim circuit`: one clean/corrupt problem, or a data set of them (`--data`).

use crate::attribution::Method;
use crate::circuit::{Corruption, DataSplit, DatasetOpts, Problem};
use crate::error::{GimError, Result};
use crate::eval::{read_jsonl, text_field_of};
use crate::loader::LoadedModel;
use crate::model::{GimRules, Positions};

use super::filters;

/// Clean/corrupt prompts and the logit-difference metric.
#[derive(clap::Args, Debug, Clone)]
pub struct ProblemArgs {
    /// The clean prompt.
    #[arg(long)]
    pub clean: Option<String>,
    /// The corrupted prompt (same number of tokens). Without it, use --zero or --mean ablation.
    #[arg(long)]
    pub corrupt: Option<String>,
    /// Zero-ablate instead of using a corrupted prompt.
    #[arg(long, conflicts_with_all = ["corrupt", "mean"])]
    pub zero: bool,
    /// Mean-ablate (mean over the clean prompt's positions) instead of a corrupted prompt.
    #[arg(long, conflicts_with = "corrupt")]
    pub mean: bool,
    /// Target token text (default: the clean prompt's top prediction).
    #[arg(long)]
    pub target: Option<String>,
    /// Foil token text: the metric is logit(target) − logit(foil) (default: the corrupted
    /// prompt's top prediction when it differs from the target, else the plain target logit).
    #[arg(long)]
    pub foil: Option<String>,
    /// Model to use (default: the current one).
    #[arg(long)]
    pub model: Option<String>,
}

fn one_token(m: &LoadedModel, t: &str, what: &str) -> Result<u32> {
    let ids = crate::attribution::target_text_ids(&m.tok, t, what)?;
    if ids.len() != 1 {
        return Err(GimError::input(format!(
            "the {what} {t:?} is {} tokens; it must be one token",
            ids.len()
        )));
    }
    Ok(ids[0])
}

fn top(m: &LoadedModel, ids: &[u32]) -> Result<u32> {
    let l = m
        .model
        .logits(&[ids.to_vec()], Positions::Last)?
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?;
    Ok(l.argmax(0)?.to_scalar::<u32>()?)
}

impl ProblemArgs {
    pub fn problem(&self, m: &LoadedModel) -> Result<Problem> {
        let clean = self
            .clean
            .as_deref()
            .ok_or_else(|| GimError::input("give --clean \"<prompt>\""))?;
        let clean = m.tok.encode(clean, true)?;
        let corrupt = match (&self.corrupt, self.zero, self.mean) {
            (Some(c), _, _) => Corruption::Prompt(m.tok.encode(c, true)?),
            (None, true, _) => Corruption::Zero,
            (None, _, true) => Corruption::Mean,
            _ => {
                return Err(GimError::input(
                    "give --corrupt \"<prompt>\" (same length), or --zero / --mean ablation",
                ))
            }
        };
        let target = match &self.target {
            Some(t) => one_token(m, t, "target")?,
            None => top(m, &clean)?,
        };
        let foil = match (&self.foil, &corrupt) {
            (Some(f), _) => Some(one_token(m, f, "foil")?),
            (None, Corruption::Prompt(c)) if c.len() == clean.len() => {
                Some(top(m, c)?).filter(|f| *f != target)
            }
            _ => None,
        };
        let p = Problem {
            clean,
            corrupt,
            target,
            foil,
        };
        p.validate(m)?;
        Ok(p)
    }
}

/// Find a circuit: rank edges by GIM edge attribution, keep the top K (or the fewest edges that
/// reach a faithfulness target), and verify by running the model with every other edge patched
/// to its corrupted value. Draws the circuit and the faithfulness curves of GIM, plain
/// attribution patching and a random ranking.
#[derive(clap::Parser, Debug)]
pub struct CircuitArgs {
    #[command(flatten)]
    pub problem: ProblemArgs,
    /// Keep this many edges.
    #[arg(long, conflicts_with = "faithfulness")]
    pub top: Option<usize>,
    /// Keep the fewest edges whose circuit reaches this faithfulness (default 0.9).
    #[arg(long)]
    pub faithfulness: Option<f64>,
    /// Seed of the random ranking (and of the bootstrap with --data).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub data: CircuitData,
    #[arg(long = "as")]
    pub var: Option<String>,
}

/// Circuits over a data set, scored as MIB scores them (CPR, CMD): `--data` and its options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CircuitData {
    /// JSONL of clean/corrupt pairs, one {"clean":..,"corrupt":..,"target":..,"foil":..} per
    /// line: average each method's edge scores over examples and report CPR/CMD per method.
    #[arg(long, conflicts_with_all = ["clean", "corrupt", "zero", "mean", "target", "foil", "top", "faithfulness"])]
    pub data: Option<String>,
    /// JSONL of examples to evaluate the circuits on (default: split --data, see --split).
    #[arg(long, requires = "data")]
    pub eval_data: Option<String>,
    /// Without --eval-data: the first fraction of the --data examples (in file order) finds the
    /// circuits, the rest evaluates them (1 = find and evaluate on all of them).
    #[arg(
        long,
        default_value_t = 0.5,
        requires = "data",
        conflicts_with = "eval_data"
    )]
    pub split: f64,
    /// Comma-separated edge methods: gim, gradient, integrated-gradients (EAP-IG),
    /// freeze-norm-only, softmax-t-only, qkv-only, gate-up-only, random.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gim,gradient,random",
        requires = "data"
    )]
    pub methods: Vec<String>,
    /// EAP-IG interpolation steps (MIB: 5).
    #[arg(long, default_value_t = 5, requires = "data")]
    pub ig_steps: usize,
    /// Edge fractions in percent (default MIB's 0.1,0.2,0.5,1,2,5,10,20,50,100).
    #[arg(long, value_delimiter = ',', requires = "data")]
    pub fractions: Option<Vec<f64>>,
    /// Bootstrap resamples of the evaluation examples for the 95% intervals.
    #[arg(long, default_value_t = 1000, requires = "data")]
    pub bootstrap: usize,
    /// Use only the first N examples of each file (after --filter).
    #[arg(long, requires = "data")]
    pub limit: Option<usize>,
    /// Keep only lines whose JSON field equals the value, e.g. template=0 (repeatable).
    #[arg(long, value_name = "FIELD=VALUE", requires = "data")]
    pub filter: Vec<String>,
    /// Field holding the clean prompt (default: clean).
    #[arg(long, requires = "data")]
    pub clean_field: Option<String>,
    /// Field holding the corrupt prompt (default: corrupt), e.g. corrupt_abc.
    #[arg(long, requires = "data")]
    pub corrupt_field: Option<String>,
    /// Field holding the target token text (default: target), e.g. io.
    #[arg(long, requires = "data")]
    pub target_field: Option<String>,
    /// Field holding the foil token text (default: foil), e.g. s.
    #[arg(long, requires = "data")]
    pub foil_field: Option<String>,
    /// Compute slice I (0-based) of N of the examples and write it with --out, for an array
    /// job: without --scores the finding stage's edge-score sums, with --scores the
    /// evaluation. `gim merge` adds the parts up (the same result as one run, exactly).
    #[arg(long, value_name = "I/N", requires_all = ["data", "out"])]
    pub shard: Option<String>,
    /// Found edge scores (`gim merge` of the finding parts): evaluate these circuits instead of
    /// finding them.
    #[arg(long, value_name = "FILE", requires = "data")]
    pub scores: Option<String>,
    /// Where --shard writes its part (JSON).
    #[arg(long, value_name = "FILE", requires = "shard")]
    pub out: Option<String>,
}

/// One read data file: its problems (line numbers kept) and the lines left out.
struct ReadPairs {
    problems: Vec<Problem>,
    skipped: usize,
}

impl CircuitData {
    /// The edge methods of `--methods`, by the token-attribution methods' names and aliases.
    pub fn methods(&self) -> Result<Vec<Method>> {
        let mut v = Vec::new();
        for s in self.methods.iter().filter(|s| !s.trim().is_empty()) {
            let em = Method::parse(s)?;
            if !em.scores_edges() {
                let names: Vec<String> = Method::all()
                    .iter()
                    .filter(|m| m.scores_edges())
                    .map(Method::name)
                    .collect();
                return Err(GimError::input(format!(
                    "`{s}` has no edge version (choose from {})",
                    names.join(", ")
                )));
            }
            if !v.contains(&em) {
                v.push(em);
            }
        }
        if v.is_empty() {
            return Err(GimError::input("--methods is empty"));
        }
        Ok(v)
    }

    /// The hunt's options (`rules`: those of the `gim` method).
    pub fn opts(&self, rules: GimRules, seed: u64) -> Result<DatasetOpts> {
        let fractions = match &self.fractions {
            None => crate::circuit::MIB_FRACTIONS.to_vec(),
            Some(v) => v.iter().map(|p| p / 100.0).collect(),
        };
        Ok(DatasetOpts {
            methods: self.methods()?,
            rules,
            ig_steps: self.ig_steps,
            fractions,
            bootstrap: self.bootstrap,
            seed,
        })
    }

    fn read(&self, m: &LoadedModel, path: &str) -> Result<ReadPairs> {
        let filter = filters(&self.filter)?;
        let f = |v: &serde_json::Value, name: &Option<String>, default: &str| {
            text_field_of(v, name, &[default])
        };
        let rows = read_jsonl(path, &filter, |v| {
            Ok((
                f(v, &self.clean_field, "clean")?,
                f(v, &self.corrupt_field, "corrupt")?,
                f(v, &self.target_field, "target")?,
                f(v, &self.foil_field, "foil")?,
            ))
        })?;
        let mut skipped = rows.filtered_out;
        let mut lines = rows.rows;
        if let Some(n) = self.limit {
            if n == 0 {
                return Err(GimError::input("--limit must be at least 1"));
            }
            skipped += lines.len().saturating_sub(n);
            lines.truncate(n);
        }
        let mut problems = Vec::with_capacity(lines.len());
        for (line, (clean, corrupt, target, foil)) in lines {
            let at = |e: GimError| GimError::input(format!("{path} line {line}: {e}"));
            let c = m.tok.encode(&clean, true).map_err(at)?;
            let k = m.tok.encode(&corrupt, true).map_err(at)?;
            if c.len() != k.len() {
                return Err(GimError::input(format!(
                    "{path} line {line}: clean has {} tokens, corrupt {}: corrupt prompts must tokenize to the same length",
                    c.len(),
                    k.len()
                )));
            }
            let p = Problem {
                clean: c,
                corrupt: Corruption::Prompt(k),
                target: one_token(m, &target, "target").map_err(at)?,
                foil: Some(one_token(m, &foil, "foil").map_err(at)?),
            };
            p.validate(m).map_err(at)?;
            problems.push(p);
        }
        Ok(ReadPairs { problems, skipped })
    }

    /// The finding and evaluation examples of `--data` (and `--eval-data` or `--split`);
    /// `None` without `--data`.
    pub fn split(&self, m: &LoadedModel) -> Result<Option<DataSplit>> {
        let Some(path) = &self.data else {
            return Ok(None);
        };
        let d = self.read(m, path)?;
        if let Some(ev) = &self.eval_data {
            let e = self.read(m, ev)?;
            return Ok(Some(DataSplit {
                how: format!(
                    "{} examples of {path} find, {} of {ev} evaluate",
                    d.problems.len(),
                    e.problems.len()
                ),
                find: d.problems,
                eval: e.problems,
                skipped: d.skipped + e.skipped,
            }));
        }
        let s = self.split;
        if !(s.is_finite() && s > 0.0 && s <= 1.0) {
            return Err(GimError::input(
                "--split must be in (0, 1]: the fraction of --data that finds the circuits",
            ));
        }
        let n = d.problems.len();
        if s == 1.0 {
            return Ok(Some(DataSplit {
                how: format!("all {n} examples find and evaluate (in-sample)"),
                eval: d.problems.clone(),
                find: d.problems,
                skipped: d.skipped,
            }));
        }
        if n < 2 {
            return Err(GimError::input(format!(
                "{path} has {n} example: give at least 2 to split, --eval-data FILE, or --split 1 to evaluate in-sample"
            )));
        }
        let k = ((n as f64 * s).round() as usize).clamp(1, n - 1);
        let mut find = d.problems;
        let eval = find.split_off(k);
        Ok(Some(DataSplit {
            how: format!("first {k} of {n} examples find, last {} evaluate", n - k),
            find,
            eval,
            skipped: d.skipped,
        }))
    }
}
