//! The `gim` command line: one file per subcommand.

pub mod attribute;
pub mod bench;
pub mod circuit;
pub mod eval;
pub mod generate;
mod kernel;
pub mod logits;
pub mod merge;
mod repl;
pub mod tasks;
pub mod train;

use clap::{Parser, Subcommand};

/// GIM: gradient attributions and circuit hunting for Hugging Face language models.
#[derive(Parser, Debug)]
#[command(name = "gim", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Last-position logits of a prompt (parity checks, quick looks).
    Logits(logits::Args),
    /// Greedy continuation of a prompt (deterministic, key/value cache).
    Generate(generate::Args),
    /// Token attributions with GIM or a comparison method.
    Attribute(attribute::Args),
    /// Benchmark forward passes and attribution methods on random-weight models.
    Bench(bench::Args),
    /// Faithfulness (comprehensiveness, sufficiency) of attribution methods over a data set.
    Eval(eval::Args),
    /// Find and verify a circuit (GIM edge attribution + real patching).
    Circuit(Box<circuit::Args>),
    /// Add up the parts of a sharded `gim circuit --data … --shard I/N` run.
    Merge(merge::Args),
    /// Generate a real task's prompts for a model (ioi, greater-than), kept where the model is right.
    Tasks(tasks::Args),
    /// Train a toy model with a known mechanism (induction, ioi).
    Train(train::Args),
    /// Jupyter kernel (`--connection-file F`) and kernelspec installation (`install`).
    Kernel(kernel::Args),
    /// Interactive terminal for the `%gim` magics.
    Repl(repl::Args),
}

/// Run the CLI; errors are one line on stderr and a non-zero exit.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Kernel(_) | Command::Repl(_)) {
        quiet_on_closed_pipe();
    }
    let r = match cli.command {
        Command::Logits(a) => logits::run(a).map_err(anyhow::Error::from),
        Command::Generate(a) => generate::run(a).map_err(anyhow::Error::from),
        Command::Attribute(a) => attribute::run(a).map_err(anyhow::Error::from),
        Command::Bench(a) => bench::run(a).map_err(anyhow::Error::from),
        Command::Eval(a) => eval::run(a).map_err(anyhow::Error::from),
        Command::Circuit(a) => circuit::run(*a).map_err(anyhow::Error::from),
        Command::Merge(a) => merge::run(a).map_err(anyhow::Error::from),
        Command::Tasks(a) => tasks::run(a).map_err(anyhow::Error::from),
        Command::Train(a) => train::run(a).map_err(anyhow::Error::from),
        Command::Kernel(a) => kernel::run(a),
        Command::Repl(a) => repl::run(a),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", first_line(&e.to_string()));
            std::process::ExitCode::from(1)
        }
    }
}

/// `gim … | head`: when the reader of stdout goes away, end quietly as other command-line tools
/// do (the default SIGPIPE action) instead of panicking in `println!` on the broken pipe. Not
/// for the kernel and the REPL, which must outlive a closed pipe.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: resetting a signal's disposition to its default, before any other thread exists
    // that could be writing.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}
