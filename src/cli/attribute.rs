//! `gim attribute`: token attributions (GIM and comparison methods) from the command line.

use std::io::{BufRead, Write};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use super::logits::input_ids;
pub use crate::args::RuleArgs;
use crate::args::{FigureArgs, JsonArg, MethodName, ModelArgs};
use crate::attribution::{
    attribute, attribute_many, AttributeRequest, Attribution, Baseline, Method, Objective,
    TargetSpec,
};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;

#[derive(clap::Args, Debug)]
#[command(mut_arg("svg", |a| a.help("Write the heatmap as SVG to this path")))]
#[command(mut_arg("png", |a| a.help("Write the heatmap as PNG to this path")))]
#[command(mut_arg("json", |a| a.help("Print the attribution as JSON")))]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated input token ids.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["prompt", "batch"])]
    pub ids: Option<Vec<u32>>,
    /// Prompt text.
    #[arg(long, conflicts_with = "batch")]
    pub prompt: Option<String>,
    /// JSONL file with one {"prompt":..,"target":..,"contrast":..} per line; results as JSONL.
    #[arg(long)]
    pub batch: Option<String>,
    /// Where batch results go (default: stdout).
    #[arg(long, requires = "batch")]
    pub out: Option<String>,
    /// Prompts per batch through the model.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Target token id (default: the model's top prediction).
    #[arg(long, conflicts_with = "target")]
    pub target_id: Option<u32>,
    /// Target text, e.g. " Paris" (several tokens: teacher-forced log-probability).
    #[arg(long)]
    pub target: Option<String>,
    /// Target the model's own greedy continuation: its next N tokens.
    #[arg(long, value_name = "N", conflicts_with_all = ["target", "target_id", "batch"])]
    pub target_generated: Option<usize>,
    /// Foil token id: attribute logit(target) − logit(foil).
    #[arg(long, conflicts_with = "contrast")]
    pub contrast_id: Option<u32>,
    /// Foil text, e.g. " London".
    #[arg(long)]
    pub contrast: Option<String>,
    /// Position whose prediction is explained (default: last; negative counts from the end).
    #[arg(long, allow_negative_numbers = true)]
    pub position: Option<i64>,
    /// Baseline token id (default: the " " token, else pad, else unk).
    #[arg(long, conflicts_with_all = ["baseline", "zero_baseline"])]
    pub baseline_id: Option<u32>,
    /// Baseline token text (must be one token).
    #[arg(long, conflicts_with = "zero_baseline")]
    pub baseline: Option<String>,
    /// Use the zero embedding as the baseline.
    #[arg(long)]
    pub zero_baseline: bool,
    /// Attribution method.
    #[arg(long, default_value = "gim", value_parser = MethodName)]
    pub method: String,
    /// Attribute the log-probability instead of the logit.
    #[arg(long)]
    pub logprob: bool,
    /// Integrated-gradients steps.
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// Seed of the `random` method.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub json: JsonArg,
    #[command(flatten)]
    pub figures: FigureArgs,
}

#[derive(Deserialize)]
struct BatchLine {
    prompt: String,
    target: Option<String>,
    target_id: Option<u32>,
    contrast: Option<String>,
    contrast_id: Option<u32>,
}

fn base_request(a: &Args, ids: Vec<u32>) -> Result<AttributeRequest> {
    let mut r = AttributeRequest::new(ids);
    r.method = Method::parse(&a.method)?;
    r.rules = a.rules.rules()?;
    r.position = a.position;
    r.objective = if a.logprob {
        Objective::LogProb
    } else {
        Objective::Logit
    };
    r.baseline = match (&a.baseline_id, &a.baseline, a.zero_baseline) {
        (Some(id), _, _) => Baseline::Id(*id),
        (None, Some(t), _) => Baseline::Text(t.clone()),
        (None, None, true) => Baseline::Zero,
        _ => Baseline::Default,
    };
    r.ig_steps = a.steps;
    r.seed = a.seed;
    Ok(r)
}

fn spec(id: Option<u32>, text: &Option<String>) -> Option<TargetSpec> {
    match (id, text) {
        (Some(i), _) => Some(TargetSpec::Id(i)),
        (None, Some(t)) => Some(TargetSpec::Text(t.clone())),
        _ => None,
    }
}

pub fn run(a: Args) -> Result<()> {
    let m = a.model.open()?;
    if let Some(path) = &a.batch {
        return run_batch(&a, &m, path);
    }
    if a.ids.is_none() && a.prompt.is_none() {
        return Err(GimError::input("give --prompt, --ids or --batch"));
    }
    let ids = input_ids(&m, &a.ids, &a.prompt)?;
    let mut req = base_request(&a, ids)?;
    req.target = match a.target_generated {
        Some(n) => TargetSpec::Ids(crate::generate::continuation(&m, &req.ids, n)?),
        None => spec(a.target_id, &a.target).unwrap_or(TargetSpec::Argmax),
    };
    req.contrast = spec(a.contrast_id, &a.contrast);
    let res = attribute(&m, &req)?;
    write_figures(&res, &a.figures)?;
    if !a.json.print(&res)? {
        println!("{}", crate::render::attribution_table(&res));
    }
    Ok(())
}

/// Write the token heatmap of `r` to the paths `--svg` / `--png` give.
pub fn write_figures(r: &Attribution, figures: &FigureArgs) -> Result<()> {
    if !figures.wanted() {
        return Ok(());
    }
    let d = crate::render::TokenScores::from(r);
    let fig = crate::render::token_heatmap(&d, &crate::render::HeatmapOpts::default())?;
    figures.write(&fig.svg, &fig.png)
}

fn to_json(r: &Attribution) -> Result<String> {
    serde_json::to_string(r).map_err(|e| GimError::Io(e.to_string()))
}

fn run_batch(a: &Args, m: &LoadedModel, path: &str) -> Result<()> {
    let f = std::fs::File::open(path)
        .map_err(|e| GimError::input(format!("cannot open {path}: {e}")))?;
    let mut reqs = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| GimError::input(format!("cannot read {path}: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let b: BatchLine = serde_json::from_str(&line).map_err(|e| {
            GimError::input(format!(
                "{path} line {}: not a {{\"prompt\":..}} JSON object ({e})",
                n + 1
            ))
        })?;
        let ids = m.tok.encode(&b.prompt, true)?;
        let mut r = base_request(a, ids)?;
        r.target = spec(b.target_id, &b.target).unwrap_or(TargetSpec::Argmax);
        r.contrast = spec(b.contrast_id, &b.contrast);
        reqs.push(r);
    }
    let bar = ProgressBar::new(reqs.len() as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} prompts {elapsed} eta {eta}")
    {
        bar.set_style(style);
    }
    let results = attribute_many(m, &reqs, a.batch_size, |done| bar.set_position(done as u64));
    bar.finish_and_clear();
    let mut sink: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .map_err(|e| GimError::input(format!("cannot write {p}: {e}")))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut failed = 0;
    for (i, r) in results.into_iter().enumerate() {
        let line = match r {
            Ok(r) => to_json(&r)?,
            Err(e) => {
                failed += 1;
                serde_json::json!({"line": i + 1, "error": e.to_string()}).to_string()
            }
        };
        writeln!(sink, "{line}").map_err(|e| GimError::Io(e.to_string()))?;
    }
    if failed > 0 {
        eprintln!(
            "{failed} of {} prompts failed; see the error lines in the output",
            reqs.len()
        );
    }
    Ok(())
}
