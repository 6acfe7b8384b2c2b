//! Integrated gradients: the gradient averaged along the straight path from the baseline to the
//! input (midpoint rule), the steps batched through the model as memory allows.

use candle_core::{DType, Tensor};

use super::methods::{baseline_embeds, dot_last, gradient, values, Engine, Plan};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::GimRules;

/// How many integrated-gradients steps go through the model at once: up to 16, as many as keep
/// the traced activations of one batch near 3 GB (a 1B model at 256 tokens: 3 steps; GPT-2 small at
/// 128 tokens: 16). Past a few thousand rows a bigger batch is no faster, only bigger.
fn ig_chunk(cfg: &crate::model::ModelConfig, tokens: usize, dtype: DType) -> usize {
    // per row and layer: MLP pre/up/post, ~10 residual-width tensors, scores and pattern per head
    let per_row = cfg.n_layers
        * (3 * cfg.d_mlp + 10 * cfg.d_model + 2 * cfg.n_heads * tokens)
        * dtype.size_in_bytes();
    let budget = 3usize << 30;
    (budget / (per_row * tokens).max(1)).clamp(1, 16)
}

/// Integrated gradients of `p` over `steps` steps from its baseline to the input embeddings `x`.
/// Returns (scores, clean value, resolved target).
pub(super) fn integrated_gradients(
    m: &LoadedModel,
    p: &Plan,
    x: &Tensor,
    steps: usize,
    engine: Engine,
) -> Result<(Vec<f64>, f64, u32)> {
    let model = &m.model;
    let (v0, t) = values(m, std::slice::from_ref(&p.ids), p, None, None)?;
    let fixed = p.with_targets(t);
    let base = baseline_embeds(m, p, x)?;
    let delta = (x - &base)?;
    let n = steps;
    let mut total: Option<Tensor> = None;
    let chunk = ig_chunk(&model.cfg, p.ids.len(), x.dtype());
    let mut k0 = 0;
    while k0 < n {
        crate::interrupt::check()?;
        let k1 = (k0 + chunk).min(n);
        let alphas: Vec<f32> = (k0..k1).map(|k| (k as f32 + 0.5) / n as f32).collect();
        let a = Tensor::from_vec(alphas, (k1 - k0, 1, 1), &model.device)?.to_dtype(x.dtype())?;
        let batch = base.broadcast_add(&delta.broadcast_mul(&a)?)?;
        let (g, _, _) = gradient(m, &batch, &fixed, GimRules::off(), engine)?;
        let gs = g.sum_keepdim(0)?;
        total = Some(match total {
            Some(t) => (t + gs)?,
            None => gs,
        });
        k0 = k1;
    }
    let avg = (total.ok_or_else(|| GimError::input("no IG steps"))? / n as f64)?;
    Ok((dot_last(&avg, &delta)?, v0[0], t))
}
