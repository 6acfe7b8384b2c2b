//! Shared arguments of the circuit magics: a clean prompt, its corruption and the metric.

use crate::circuit::{Corruption, Problem};
use crate::error::GimError;
use crate::loader::LoadedModel;
use crate::model::Positions;

/// Clean/corrupt prompts and the logit-difference metric.
#[derive(clap::Args, Debug, Clone)]
pub struct ProblemArgs {
    /// The clean prompt.
    #[arg(long)]
    pub clean: String,
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

fn one_token(m: &LoadedModel, t: &str, what: &str) -> Result<u32, GimError> {
    let ids = crate::attribution::target_text_ids(&m.tok, t, what)?;
    if ids.len() != 1 {
        return Err(GimError::input(format!(
            "the {what} {t:?} is {} tokens; it must be one token",
            ids.len()
        )));
    }
    Ok(ids[0])
}

fn top(m: &LoadedModel, ids: &[u32]) -> Result<u32, GimError> {
    let l = m
        .model
        .logits(&[ids.to_vec()], Positions::Last)?
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?;
    Ok(l.argmax(0)?.to_scalar::<u32>()?)
}

impl ProblemArgs {
    pub fn problem(&self, m: &LoadedModel) -> Result<Problem, GimError> {
        let clean = m.tok.encode(&self.clean, true)?;
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

/// "logit(Mary) − logit(John)" for titles.
pub fn metric_name(m: &LoadedModel, p: &Problem) -> String {
    match p.foil {
        Some(f) => format!(
            "logit({}) − logit({})",
            m.tok.decode_one(p.target).trim(),
            m.tok.decode_one(f).trim()
        ),
        None => format!("logit({})", m.tok.decode_one(p.target).trim()),
    }
}
