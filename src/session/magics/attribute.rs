//! `%gim attribute "<prompt>"`: token attributions as a heatmap, an HTML token view and JSON.

use super::Flow;
use crate::args::MethodName;
use crate::attribution::{attribute, AttributeRequest, Baseline, Method, Objective, TargetSpec};
use crate::error::GimError;
use crate::session::{views, MimeBundle, Output, Session};

pub const NAME: &str = "attribute";

/// Attribute the prediction at a position (default: last) to the prompt's tokens with GIM
/// (or another method), using the session's GIM settings (`%gim config`).
#[derive(clap::Parser, Debug)]
pub struct Args {
    /// The prompt (quote it).
    pub prompt: String,
    /// Target text, e.g. " Paris" (default: the model's top prediction). Several tokens: the
    /// teacher-forced sum of their log-probabilities is attributed.
    #[arg(long, conflicts_with = "target_id")]
    pub target: Option<String>,
    /// Target token id.
    #[arg(long)]
    pub target_id: Option<u32>,
    /// Target the model's own greedy continuation: its next N tokens (teacher-forced sum of their
    /// log-probabilities; one token: its logit).
    #[arg(long, value_name = "N", conflicts_with_all = ["target", "target_id"])]
    pub target_generated: Option<usize>,
    /// Foil text: attribute logit(target) − logit(foil).
    #[arg(long, conflicts_with = "contrast_id")]
    pub contrast: Option<String>,
    /// Foil token id.
    #[arg(long)]
    pub contrast_id: Option<u32>,
    /// Method (default from `%gim config`).
    #[arg(long, value_parser = MethodName)]
    pub method: Option<String>,
    /// Position whose prediction is explained (negative counts from the end).
    #[arg(long, allow_negative_numbers = true)]
    pub position: Option<i64>,
    /// Baseline token text (one token); default " " → pad → unk.
    #[arg(long, conflicts_with_all = ["baseline_id", "zero_baseline"])]
    pub baseline: Option<String>,
    /// Baseline token id.
    #[arg(long, conflicts_with = "zero_baseline")]
    pub baseline_id: Option<u32>,
    /// Zero-embedding baseline.
    #[arg(long)]
    pub zero_baseline: bool,
    /// Attribute the log-probability instead of the logit.
    #[arg(long)]
    pub logprob: bool,
    /// Model to use (default: the current one).
    #[arg(long)]
    pub model: Option<String>,
    /// Keep the result under this name (for `%gim export`).
    #[arg(long = "as")]
    pub var: Option<String>,
}

/// Build a request from the shared target/baseline flags.
#[allow(clippy::too_many_arguments)]
pub fn request(
    s: &Session,
    ids: Vec<u32>,
    target: &Option<String>,
    target_id: Option<u32>,
    contrast: &Option<String>,
    contrast_id: Option<u32>,
    position: Option<i64>,
    method: &Option<String>,
) -> Result<AttributeRequest, GimError> {
    let mut r = AttributeRequest::new(ids);
    r.rules = s.settings.rules;
    r.ig_steps = s.settings.ig_steps;
    r.seed = s.settings.seed;
    r.method = match method {
        Some(m) => Method::parse(m)?,
        None => s.settings.method,
    };
    r.position = position;
    r.target = match (target_id, target) {
        (Some(i), _) => TargetSpec::Id(i),
        (None, Some(t)) => TargetSpec::Text(t.clone()),
        _ => TargetSpec::Argmax,
    };
    r.contrast = match (contrast_id, contrast) {
        (Some(i), _) => Some(TargetSpec::Id(i)),
        (None, Some(t)) => Some(TargetSpec::Text(t.clone())),
        _ => None,
    };
    Ok(r)
}

/// The model named by `--model`, or the current one.
pub fn pick<'a>(
    s: &'a Session,
    name: &Option<String>,
) -> Result<&'a crate::loader::LoadedModel, GimError> {
    match name {
        Some(n) => s.models.get(n).ok_or_else(|| {
            GimError::input(format!(
                "no model named `{n}` is loaded; `%gim models` lists them"
            ))
        }),
        None => s.model(),
    }
}

pub fn run(s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let m = pick(s, &a.model)?;
    let ids = m.tok.encode(&a.prompt, true)?;
    let mut req = request(
        s,
        ids,
        &a.target,
        a.target_id,
        &a.contrast,
        a.contrast_id,
        a.position,
        &a.method,
    )?;
    if let Some(n) = a.target_generated {
        req.target =
            crate::attribution::TargetSpec::Ids(crate::generate::continuation(m, &req.ids, n)?);
    }
    req.baseline = match (&a.baseline, a.baseline_id, a.zero_baseline) {
        (Some(t), _, _) => Baseline::Text(t.clone()),
        (None, Some(i), _) => Baseline::Id(i),
        (None, None, true) => Baseline::Zero,
        _ => Baseline::Default,
    };
    if a.logprob {
        req.objective = Objective::LogProb;
    }
    let res = attribute(m, &req)?;
    let bundle = views::attribution_bundle(&res);
    if let Some(v) = a.var {
        s.vars
            .insert(v, serde_json::to_value(&res).unwrap_or_default());
    }
    Ok(Some(bundle))
}
