//! `%gim eval --data F --methods …`: faithfulness of attribution methods over a data set, as a
//! table, a bar chart and JSON.

use super::Flow;
use crate::args::EvalSet;
use crate::attribution::{AttributeRequest, Baseline};
use crate::eval::{evaluate, FaithfulnessOpts};
use crate::render::faithfulness_bundle;
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "eval";

/// Measure comprehensiveness (higher is better) and sufficiency (lower is better) of attribution
/// methods on every example of a JSONL file (or generated induction prompts), with the current
/// model and the session's GIM settings; shows mean ± 95% CI per method.
#[derive(clap::Parser, Debug)]
pub struct Args {
    #[command(flatten)]
    pub set: EvalSet,
    /// Model to use (default: the current one).
    #[arg(long)]
    pub model: Option<String>,
    /// Keep the results under this name (for `%gim export`).
    #[arg(long = "as")]
    pub var: Option<String>,
}

pub fn run(s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let methods = a.set.methods()?;
    let data = a.set.examples()?;
    let m = super::attribute::pick(s, &a.model)?;
    let mut proto = AttributeRequest::new(vec![]);
    proto.rules = s.settings.rules;
    proto.ig_steps = s.settings.ig_steps;
    proto.seed = s.settings.seed;
    proto.baseline = Baseline::Default;
    let opts = FaithfulnessOpts {
        max_steps: a.set.max_steps,
        metric: a.set.metric,
        ..Default::default()
    };
    let run = evaluate(m, &data, &methods, &proto, &opts, |_| Ok(()))?;
    let bundle = faithfulness_bundle(&run);
    if let Some(v) = a.var {
        s.vars
            .insert(v, serde_json::to_value(&run).unwrap_or_default());
    }
    Ok(Some(bundle))
}
