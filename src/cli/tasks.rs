//! `gim tasks ioi|greater-than`: generate a real task's prompts for a model's tokenizer and keep
//! those the model gets right, as JSONL (`clean`, `corrupt`, `target`, `foil`, metadata).

use std::io::Write;

use crate::args::ModelArgs;
use crate::error::{GimError, Result};
use crate::tasks::{build, IoiCorruption, TaskKind, TaskOpts};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The task.
    #[arg(value_enum)]
    pub task: TaskKind,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompts to generate; those the model gets right are kept.
    #[arg(long, default_value_t = 200)]
    pub n: usize,
    /// Seed of the generator (same seed, same prompts).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// IOI corruption.
    #[arg(long, value_enum, default_value_t = IoiCorruption::Abc)]
    pub corrupt: IoiCorruption,
    /// Also require the target to be the model's top prediction.
    #[arg(long)]
    pub top1: bool,
    /// Write the JSONL here instead of stdout.
    #[arg(long)]
    pub out: Option<String>,
    /// Prompts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

pub fn run(a: Args) -> Result<()> {
    let m = a.model.open()?;
    let opts = TaskOpts {
        n: a.n,
        seed: a.seed,
        corruption: a.corrupt,
        top1: a.top1,
        batch_size: a.batch_size.max(1),
    };
    // Open the output before the model runs so a bad path fails at once.
    let mut sink: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .map_err(|e| GimError::input(format!("cannot write {p}: {e}")))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    crate::interrupt::clear();
    crate::interrupt::on_ctrl_c();
    let set = build(&m, a.task, &opts)?;
    let mut text = String::new();
    for ex in &set.examples {
        text.push_str(&serde_json::to_string(ex).map_err(|e| GimError::Io(e.to_string()))?);
        text.push('\n');
    }
    sink.write_all(text.as_bytes())
        .and_then(|_| sink.flush())
        .map_err(|e| GimError::input(format!("cannot write the JSONL: {e}")))?;
    eprintln!("{}", set.summary());
    Ok(())
}
