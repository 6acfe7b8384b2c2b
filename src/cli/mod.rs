//! The `gim` command line: one file per subcommand.

mod kernel;
mod logits;
mod repl;

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
    /// Jupyter kernel (`--connection-file F`) and kernelspec installation (`install`).
    Kernel(kernel::Args),
    /// Interactive terminal for the `%gim` magics.
    Repl(repl::Args),
}

/// Run the CLI; errors are one line on stderr and a non-zero exit.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Logits(a) => logits::run(a).map_err(anyhow::Error::from),
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

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}
