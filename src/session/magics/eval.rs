//! `%gim eval --data F --methods …`: faithfulness of attribution methods over a data set, as a
//! table, a bar chart and JSON.

use super::Flow;
use crate::attribution::{AttributeRequest, Baseline};
use crate::cli::eval::{filters, methods};
use crate::error::GimError;
use crate::eval::{evaluate, induction_examples, read_examples, FaithfulnessOpts, Fields};
use crate::render::faithfulness_bundle;
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "eval";

/// Measure comprehensiveness (higher is better) and sufficiency (lower is better) of attribution
/// methods on every example of a JSONL file (or generated induction prompts), with the current
/// model and the session's GIM settings; shows mean ± 95% CI per method.
#[derive(clap::Parser, Debug)]
pub struct Args {
    /// JSONL, one {"prompt":..,"target":..,"contrast":..} per line (or "clean"/"io" as in the toy
    /// IOI prompts).
    #[arg(long, required_unless_present = "task", conflicts_with = "task")]
    pub data: Option<String>,
    /// Generate the examples: induction.
    #[arg(long, value_parser = ["induction"])]
    pub task: Option<String>,
    /// Examples to generate with --task.
    #[arg(long, default_value_t = 50)]
    pub n: usize,
    /// Comma-separated methods (default: all).
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// Use only the first N examples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Keep only lines whose field equals the value, e.g. heldout_template=true (repeatable).
    #[arg(long, value_name = "FIELD=VALUE")]
    pub filter: Vec<String>,
    /// Field holding the target text (default: target_id, else target, else io).
    #[arg(long)]
    pub target_field: Option<String>,
    /// Field holding the contrast text, e.g. `s` for the IOI subject.
    #[arg(long)]
    pub contrast_field: Option<String>,
    /// Most top-ranked tokens replaced for comprehensiveness.
    #[arg(long, default_value_t = 50)]
    pub max_steps: usize,
    /// Model to use (default: the current one).
    #[arg(long)]
    pub model: Option<String>,
    /// Keep the results under this name (for `%gim export`).
    #[arg(long = "as")]
    pub var: Option<String>,
}

pub fn run(s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let methods = methods(&a.methods)?;
    let mut data = match (&a.data, &a.task) {
        (_, Some(_)) => induction_examples(a.n, 1),
        (Some(path), None) => read_examples(
            path,
            &Fields {
                prompt: None,
                target: a.target_field.clone(),
                contrast: a.contrast_field.clone(),
                filter: filters(&a.filter)?,
            },
        )?,
        (None, None) => return Err(GimError::input("give --data or --task").into()),
    };
    if let Some(n) = a.limit {
        data.truncate(n);
    }
    if data.is_empty() || a.max_steps == 0 {
        return Err(GimError::input("no examples to evaluate (or --max-steps 0)").into());
    }
    let m = super::attribute::pick(s, &a.model)?;
    let mut proto = AttributeRequest::new(vec![]);
    proto.rules = s.settings.rules;
    proto.ig_steps = s.settings.ig_steps;
    proto.seed = s.settings.seed;
    proto.baseline = Baseline::Default;
    let opts = FaithfulnessOpts {
        max_steps: a.max_steps,
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
