//! `gim eval`: faithfulness (comprehensiveness, sufficiency) of attribution methods over a data set.

use std::io::Write;

use indicatif::{ProgressBar, ProgressStyle};

use super::attribute::RuleArgs;
use super::logits::open;
use crate::attribution::{AttributeRequest, Baseline, Method};
use crate::error::{GimError, Result};
use crate::eval::{
    evaluate, induction_examples, read_examples, EvalExample, FaithfulnessOpts, Fields,
};
use crate::render::{faithfulness_chart, faithfulness_table};

/// Generated data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalTask {
    /// induction prompts from the toy task's generator (for toy-induction)
    Induction,
}

/// Which examples and methods an evaluation runs: the options `gim eval` and `%gim eval` share.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalSet {
    /// JSONL, one {"prompt":..,"target":..,"contrast":..} per line (or the toy IOI format:
    /// "clean" as prompt, "io" as target).
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
    #[arg(long, value_delimiter = ',')]
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
    /// Field holding the contrast text, e.g. `s` for the IOI subject (default: contrast_id, else contrast).
    #[arg(long)]
    pub contrast_field: Option<String>,
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

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model folder, .gguf file, embedded toy (toy-ioi), named model (smollm2-135m) or Hugging Face repo id (org/name[@rev]).
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub set: EvalSet,
    /// Per-example results as JSONL (written as examples finish).
    #[arg(long)]
    pub out: Option<String>,
    /// Write the chart as SVG to this path.
    #[arg(long)]
    pub svg: Option<String>,
    /// Write the chart as PNG to this path.
    #[arg(long)]
    pub png: Option<String>,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Patched prompts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Baseline (replacement) token id (default: the " " token, else pad, else unk).
    #[arg(long, conflicts_with = "baseline")]
    pub baseline_id: Option<u32>,
    /// Baseline token text (must be one token).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Integrated-gradients steps.
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// Seed of the `random` method.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub rules: RuleArgs,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Parse `--methods` (default: every method).
pub fn methods(names: &Option<Vec<String>>) -> Result<Vec<Method>> {
    match names {
        None => Ok(Method::ALL.to_vec()),
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

fn create(p: &str) -> Result<std::fs::File> {
    std::fs::File::create(p).map_err(|e| GimError::input(format!("cannot write {p}: {e}")))
}

pub fn run(a: Args) -> Result<()> {
    let methods = a.set.methods()?;
    let data = a.set.examples()?;
    let rules = a.rules.rules()?;
    let m = open(&a.model, &a.dtype, &a.device)?;
    let mut proto = AttributeRequest::new(vec![]);
    proto.rules = rules;
    proto.ig_steps = a.steps;
    proto.seed = a.seed;
    proto.baseline = match (a.baseline_id, &a.baseline) {
        (Some(id), _) => Baseline::Id(id),
        (None, Some(t)) => Baseline::Text(t.clone()),
        _ => Baseline::Default,
    };
    let opts = FaithfulnessOpts {
        max_steps: a.set.max_steps,
        batch_size: a.batch_size.max(1),
        ..Default::default()
    };
    // Open the JSONL before the long run so a bad path fails at once.
    let mut sink = a.out.as_deref().map(create).transpose()?;
    crate::interrupt::clear();
    crate::interrupt::on_ctrl_c();
    let bar = ProgressBar::new(data.len() as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {pos}/{len} examples × {msg} methods {elapsed} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(methods.len().to_string());
    let run = evaluate(&m, &data, &methods, &proto, &opts, |rs| {
        if let (Some(f), Some(p)) = (sink.as_mut(), &a.out) {
            for r in rs {
                let line = serde_json::to_string(r).map_err(|e| GimError::Io(e.to_string()))?;
                writeln!(f, "{line}")
                    .map_err(|e| GimError::input(format!("cannot write {p}: {e}")))?;
            }
            f.flush().map_err(|e| GimError::Io(e.to_string()))?;
        }
        bar.inc(1);
        Ok(())
    })?;
    bar.finish_and_clear();
    if run.n_done > 0 && (a.svg.is_some() || a.png.is_some()) {
        let title = format!(
            "Faithfulness on {} ({} examples)",
            crate::loader::default_name(&a.model),
            run.n_done
        );
        let fig = faithfulness_chart(&run.summary, &title)?;
        if let Some(p) = &a.svg {
            std::fs::write(p, &fig.svg)
                .map_err(|e| GimError::input(format!("cannot write {p}: {e}")))?;
        }
        if let Some(p) = &a.png {
            std::fs::write(p, &fig.png)
                .map_err(|e| GimError::input(format!("cannot write {p}: {e}")))?;
        }
    }
    if a.json {
        let mut v = serde_json::to_value(&run).map_err(|e| GimError::Io(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.remove("results");
        }
        println!("{v}");
    } else {
        print!("{}", faithfulness_table(&run));
        println!("{:.1} s", run.seconds);
    }
    if run.interrupted {
        eprintln!(
            "interrupted: the table covers the {} finished examples",
            run.n_done
        );
    }
    Ok(())
}
