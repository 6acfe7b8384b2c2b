//! Clap argument groups that more than one command takes: `gim` subcommands (`cli`) and `%gim`
//! magics (`session::magics`) flatten the same structs, so a flag means the same everywhere.
//! Above the analyses (it turns flags into their requests), below the session and the CLI.

use std::ffi::OsStr;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::ValueEnum;

use crate::attribution::Method;
use crate::circuit::{Corruption, DataSplit, DatasetOpts, Problem};
use crate::error::{GimError, Result};
use crate::eval::{
    induction_examples, read_examples, read_jsonl, text_field_of, EvalExample, Fields, Metric,
};
use crate::loader::{self, LoadOpts, LoadedModel};
use crate::model::{GimRules, Positions};

/// The model a `gim` subcommand loads and how: `--model`, `--dtype`, `--device`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model folder, .gguf file, embedded toy (toy-ioi), named model (smollm2-135m) or Hugging Face repo id (org/name[@rev]).
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

impl ModelArgs {
    /// Load `--model` with `--dtype` on `--device`.
    pub fn open(&self) -> Result<LoadedModel> {
        self.load.open(&self.model)
    }
}

/// How a `gim` subcommand loads its models: `--dtype`, `--device` (with [`ModelArgs`], or beside
/// a `--model` of another kind).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Compute dtype: f32, bf16, f16, f64.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Device: cpu, cuda:N, metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl LoadArgs {
    /// The load options these flags name.
    pub fn opts(&self) -> Result<LoadOpts> {
        Ok(LoadOpts {
            device: loader::parse_device(&self.device)?,
            dtype: loader::parse_dtype(&self.dtype)?,
            name: None,
        })
    }

    /// Load `model` (folder, .gguf file, toy, named model or repo id) with these options.
    pub fn open(&self, model: &str) -> Result<LoadedModel> {
        loader::load(model, &self.opts()?)
    }
}

/// `--json`: a `gim` subcommand prints its result as JSON (the result type's serde form, the
/// same that `%gim … --as VAR` keeps) instead of text. Each subcommand says what it prints in the
/// help (`#[command(mut_arg("json", ..))]`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JsonArg {
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl JsonArg {
    /// With `--json`, `value` as one line of JSON on stdout and `true`; else `false` (the caller
    /// prints its text).
    pub fn print<T: serde::Serialize>(&self, value: &T) -> Result<bool> {
        if !self.json {
            return Ok(false);
        }
        let s = serde_json::to_string(value)
            .map_err(|e| GimError::Io(format!("cannot write the result as JSON: {e}")))?;
        println!("{s}");
        Ok(true)
    }
}

/// Where a `gim` subcommand writes its figure: `--svg`, `--png`. Each subcommand names its
/// figure in the help (`#[command(mut_arg(..))]`).
#[derive(clap::Args, Debug, Clone)]
pub struct FigureArgs {
    /// Write the figure as SVG to this path.
    #[arg(long)]
    pub svg: Option<String>,
    /// Write the figure as PNG to this path.
    #[arg(long)]
    pub png: Option<String>,
}

impl FigureArgs {
    /// Whether a figure is asked for (draw it only then).
    pub fn wanted(&self) -> bool {
        self.svg.is_some() || self.png.is_some()
    }

    /// Write a drawn figure to the paths given.
    pub fn write(&self, svg: &str, png: &[u8]) -> Result<()> {
        let write = |p: &String, bytes: &[u8]| {
            std::fs::write(p, bytes).map_err(|e| GimError::input(format!("cannot write {p}: {e}")))
        };
        if let Some(p) = &self.svg {
            write(p, svg.as_bytes())?;
        }
        if let Some(p) = &self.png {
            write(p, png)?;
        }
        Ok(())
    }
}

/// The value parser of `--method` / `--methods`: clap lists [`Method`]'s names (help, docs,
/// completion) and keeps the text; the command parses it with [`Method::parse`] (aliases, any
/// case), so a bad name is that command's own one-line error.
#[derive(Clone, Debug)]
pub struct MethodName;

impl TypedValueParser for MethodName {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> std::result::Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            Method::all()
                .iter()
                .filter_map(ValueEnum::to_possible_value),
        ))
    }
}

/// GIM settings as flags (`gim attribute`, `gim eval` and other commands).
#[derive(clap::Args, Debug, Clone)]
pub struct RuleArgs {
    /// Turn off norm freezing.
    #[arg(long)]
    pub no_freeze_norm: bool,
    /// Attention-softmax backward temperature (1 = off).
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    pub softmax_temperature: f64,
    /// Gradient scale on queries.
    #[arg(long, default_value_t = 0.25, allow_negative_numbers = true)]
    pub q_scale: f64,
    /// Gradient scale on keys.
    #[arg(long, default_value_t = 0.25, allow_negative_numbers = true)]
    pub k_scale: f64,
    /// Gradient scale on values.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    pub v_scale: f64,
    /// Gradient scale on the gate projection of gated MLPs.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    pub gate_scale: f64,
    /// Gradient scale on the up projection of gated MLPs.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    pub up_scale: f64,
}

impl RuleArgs {
    pub fn rules(&self) -> Result<GimRules> {
        let r = GimRules {
            freeze_norm: !self.no_freeze_norm,
            softmax_temperature: Some(self.softmax_temperature),
            q_scale: Some(self.q_scale),
            k_scale: Some(self.k_scale),
            v_scale: Some(self.v_scale),
            gate_scale: Some(self.gate_scale),
            up_scale: Some(self.up_scale),
        };
        r.validate()?;
        Ok(r)
    }
}

/// Generated data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalTask {
    /// induction prompts from the toy task's generator (for toy-induction)
    Induction,
}

/// Which examples and methods an evaluation runs: the options `gim eval` and `%gim eval` share.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalSet {
    /// JSONL, one {"prompt":..,"target":..,"contrast":..} per line (or `gim tasks` output:
    /// "clean" as prompt, "foil" as contrast; or the toy IOI format: "io" as target).
    #[arg(long, required_unless_present = "task", conflicts_with = "task")]
    pub data: Option<String>,
    /// Generate the examples instead of reading --data.
    #[arg(long, value_enum)]
    pub task: Option<EvalTask>,
    /// Examples to generate with --task.
    #[arg(long, default_value_t = 50, requires = "task")]
    pub n: usize,
    /// Seed of the generated examples.
    #[arg(long, default_value_t = 1)]
    pub task_seed: u64,
    /// Comma-separated methods (default: all).
    #[arg(long, value_delimiter = ',', value_parser = MethodName)]
    pub methods: Option<Vec<String>>,
    /// Use only the first N examples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Keep only lines whose JSON field equals the value, e.g. heldout_template=true (repeatable).
    #[arg(long, value_name = "FIELD=VALUE")]
    pub filter: Vec<String>,
    /// Field holding the prompt text (default: prompt, else clean).
    #[arg(long)]
    pub prompt_field: Option<String>,
    /// Field holding the target text (default: target_id, else target, else io).
    #[arg(long)]
    pub target_field: Option<String>,
    /// Field holding the contrast text, e.g. `s` for the IOI subject (default: contrast_id, else contrast, else foil).
    #[arg(long)]
    pub contrast_field: Option<String>,
    /// The score f whose drops are measured: logit (of the target), logit-diff (target − foil)
    /// or log-prob (of the target) [default: logit-diff when every example has a foil, else logit].
    #[arg(long, value_enum)]
    pub metric: Option<Metric>,
    /// Most top-ranked tokens replaced for comprehensiveness.
    #[arg(long, default_value_t = 50)]
    pub max_steps: usize,
}

impl EvalSet {
    /// The methods (default: every method).
    pub fn methods(&self) -> Result<Vec<Method>> {
        methods(&self.methods)
    }

    /// The examples, read or generated, after `--filter` and `--limit`; never empty.
    pub fn examples(&self) -> Result<Vec<EvalExample>> {
        if self.max_steps == 0 {
            return Err(GimError::input("--max-steps must be at least 1"));
        }
        let mut ex = match (&self.data, self.task) {
            (_, Some(EvalTask::Induction)) => induction_examples(self.n, self.task_seed),
            (Some(path), None) => read_examples(
                path,
                &Fields {
                    prompt: self.prompt_field.clone(),
                    target: self.target_field.clone(),
                    contrast: self.contrast_field.clone(),
                    filter: filters(&self.filter)?,
                },
            )?,
            (None, None) => return Err(GimError::input("give --data or --task")),
        };
        if let Some(n) = self.limit {
            ex.truncate(n);
        }
        if ex.is_empty() {
            return Err(GimError::input("no examples to evaluate"));
        }
        Ok(ex)
    }
}

/// Parse `--methods` (default: every method).
pub fn methods(names: &Option<Vec<String>>) -> Result<Vec<Method>> {
    match names {
        None => Ok(Method::all().to_vec()),
        Some(v) => {
            let ms: Vec<Method> = v
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| Method::parse(s))
                .collect::<Result<_>>()?;
            if ms.is_empty() {
                return Err(GimError::input("--methods is empty"));
            }
            Ok(ms)
        }
    }
}

/// Parse `FIELD=VALUE` filters.
pub fn filters(v: &[String]) -> Result<Vec<(String, String)>> {
    v.iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| GimError::input(format!("--filter {f:?}: use FIELD=VALUE")))
        })
        .collect()
}

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
