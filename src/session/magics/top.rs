//! `%gim top "<prompt>"`: the model's most likely next tokens.

use candle_core::{DType, D};

use super::attribute::pick;
use super::Flow;
use crate::model::Positions;
use crate::session::{views, MimeBundle, Output, Session};

pub const NAME: &str = "top";

/// Next-token table at the last position: token, id, logit and probability.
#[derive(clap::Parser, Debug)]
pub struct Args {
    pub prompt: String,
    /// How many tokens to show.
    #[arg(short = 'k', long, default_value_t = 10)]
    pub k: usize,
    #[arg(long)]
    pub model: Option<String>,
}

pub fn run(s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let m = pick(s, &a.model)?;
    let ids = m.tok.encode(&a.prompt, true)?;
    let logits = m
        .model
        .logits(&[ids], Positions::Last)?
        .flatten_all()?
        .to_dtype(DType::F64)?;
    let probs: Vec<f64> = candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec1()?;
    let l: Vec<f64> = logits.to_vec1()?;
    let mut order: Vec<usize> = (0..l.len()).collect();
    order.sort_by(|&x, &y| l[y].total_cmp(&l[x]).then(x.cmp(&y)));
    let rows: Vec<views::TopRow> = order
        .iter()
        .take(a.k.max(1))
        .map(|&i| views::TopRow {
            id: i as u32,
            token: m.tok.decode_one(i as u32),
            logit: l[i],
            prob: probs[i],
        })
        .collect();
    Ok(Some(views::top_bundle(&rows)))
}
