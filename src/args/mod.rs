//! Clap argument groups that more than one command takes: `gim` subcommands (`cli`) and `%gim`
//! magics (`session::magics`) flatten the same structs, so a flag means the same everywhere.
//! Above the analyses (it turns flags into their requests), below the session and the CLI.

use std::ffi::OsStr;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::ValueEnum;

mod circuit;
mod eval;

pub use circuit::{CircuitArgs, CircuitData, ProblemArgs};
pub use eval::{EvalSet, EvalTask};

use crate::attribution::Method;
use crate::error::{GimError, Result};
use crate::loader::{self, LoadOpts, LoadedModel};
use crate::model::GimRules;

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
