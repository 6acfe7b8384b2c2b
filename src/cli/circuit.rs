//! `gim circuit`: the `%gim circuit` analysis from the command line (JSON and pictures).
//! It takes the magic's own arguments; `--model` names a folder, .gguf file, toy, named model or repo id here.

use super::logits::open;
use crate::error::{GimError, Result};
use crate::session::magics::circuit::{circuit_figure, report, summary, Args as MagicArgs};
use crate::session::Session;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub circuit: MagicArgs,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the circuit graph as SVG.
    #[arg(long)]
    pub svg: Option<String>,
    /// Write the circuit graph as PNG.
    #[arg(long)]
    pub png: Option<String>,
}

pub fn run(mut a: Args) -> Result<()> {
    let spec = a.circuit.problem.model.take().ok_or_else(|| {
        GimError::input("give --model <folder|file.gguf|toy-ioi|smollm2-135m|org/name>")
    })?;
    let m = open(&spec, &a.dtype, &a.device)?;
    let mut s = Session::new();
    let name = m.name.clone();
    s.models.insert(name.clone(), m);
    s.current = Some(name);
    let r = report(&s, &a.circuit)?;
    if a.svg.is_some() || a.png.is_some() {
        let fig = circuit_figure(s.model()?, &r)?;
        let write = |p: &String, bytes: &[u8]| {
            std::fs::write(p, bytes).map_err(|e| GimError::input(format!("cannot write {p}: {e}")))
        };
        if let Some(p) = &a.svg {
            write(p, fig.svg.as_bytes())?;
        }
        if let Some(p) = &a.png {
            write(p, &fig.png)?;
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&r).map_err(|e| GimError::Io(e.to_string()))?
        );
    } else {
        print!("{}", summary(&r));
    }
    Ok(())
}
