//! `gim logits`: last-position logits as JSON or a short table.

use serde::Serialize;

use crate::args::{JsonArg, ModelArgs};
use crate::loader::LoadedModel;
use crate::model::Positions;

#[derive(clap::Args, Debug)]
#[command(mut_arg("json", |a| a.help("Print one JSON object")))]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated token ids.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "prompt",
        required_unless_present = "prompt"
    )]
    pub ids: Option<Vec<u32>>,
    /// Prompt text (tokenized with the model's tokenizer, special tokens added).
    #[arg(long)]
    pub prompt: Option<String>,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Serialize)]
struct TopEntry {
    id: u32,
    token: String,
    logit: f64,
}

#[derive(Serialize)]
struct LogitsOut {
    model_type: String,
    token_ids: Vec<u32>,
    tokens: Vec<String>,
    logits: Vec<f64>,
    top: Vec<TopEntry>,
}

/// Token ids from `--ids` or `--prompt`.
pub fn input_ids(
    m: &LoadedModel,
    ids: &Option<Vec<u32>>,
    prompt: &Option<String>,
) -> crate::Result<Vec<u32>> {
    match (ids, prompt) {
        (Some(ids), _) => Ok(ids.clone()),
        (None, Some(p)) => m.tok.encode(p, true),
        (None, None) => Err(crate::GimError::input("give --ids or --prompt")),
    }
}

pub fn run(a: Args) -> crate::Result<()> {
    let m = a.model.open()?;
    let ids = input_ids(&m, &a.ids, &a.prompt)?;
    let logits = m
        .model
        .logits(std::slice::from_ref(&ids), Positions::Last)?;
    let v: Vec<f64> = logits
        .flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1()?;
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    let top: Vec<TopEntry> = order
        .iter()
        .take(5)
        .map(|&i| TopEntry {
            id: i as u32,
            token: m.tok.decode_one(i as u32),
            logit: v[i],
        })
        .collect();
    let out = LogitsOut {
        model_type: m.model.cfg.model_type.clone(),
        tokens: ids.iter().map(|&i| m.tok.decode_one(i)).collect(),
        token_ids: ids,
        logits: v,
        top,
    };
    if !a.json.print(&out)? {
        println!("model_type: {}", out.model_type);
        println!("tokens:     {:?}", out.tokens);
        println!("top next tokens at the last position:");
        for t in &out.top {
            println!("  {:>8}  {:>10.4}  {:?}", t.id, t.logit, t.token);
        }
    }
    Ok(())
}
