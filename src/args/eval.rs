//! `gim eval` / `%gim eval`: which examples and methods a token-attribution evaluation runs.

use crate::attribution::Method;
use crate::error::{GimError, Result};
use crate::eval::{induction_examples, read_examples, EvalExample, Fields, Metric};

use super::{filters, methods, MethodName};

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
