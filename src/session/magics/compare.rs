//! `%gim compare "<prompt>" --methods gim,gradient,…`: several methods side by side, one figure.

use super::attribute::{pick, request};
use super::Flow;
use crate::args::MethodName;
use crate::attribution::{attribute, Method};
use crate::session::{views, MimeBundle, Output, Session};

pub const NAME: &str = "compare";

/// Attribute one prompt with several methods and show them side by side on a shared colour scale.
#[derive(clap::Parser, Debug)]
pub struct Args {
    pub prompt: String,
    /// Comma-separated methods.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = MethodName,
        default_value = "gim,gradient,grad-x-input,integrated-gradients,occlusion"
    )]
    pub methods: Vec<String>,
    #[arg(long, conflicts_with = "target_id")]
    pub target: Option<String>,
    #[arg(long)]
    pub target_id: Option<u32>,
    #[arg(long)]
    pub contrast: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub position: Option<i64>,
    /// Scale each row to its own maximum instead of one shared scale.
    #[arg(long)]
    pub normalize: bool,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long = "as")]
    pub var: Option<String>,
}

pub fn run(s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let methods: Vec<Method> = a
        .methods
        .iter()
        .map(|m| Method::parse(m))
        .collect::<Result<_, _>>()?;
    let m = pick(s, &a.model)?;
    let ids = m.tok.encode(&a.prompt, true)?;
    let mut results = Vec::new();
    for me in methods {
        crate::interrupt::check()?;
        let mut req = request(
            s,
            ids.clone(),
            &a.target,
            a.target_id,
            &a.contrast,
            None,
            a.position,
            &None,
        )?;
        req.method = me;
        results.push(attribute(m, &req)?);
    }
    let bundle = views::compare_bundle(&results, a.normalize);
    if let Some(v) = a.var {
        s.vars
            .insert(v, serde_json::to_value(&results).unwrap_or_default());
    }
    Ok(Some(bundle))
}
