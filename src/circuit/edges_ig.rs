//! EAP-IG: edge attribution with integrated gradients between the corrupt and clean input
//! embeddings (`gim circuit --data --methods integrated-gradients`).

use candle_core::{Tensor, Var};

use super::edges::{score_edges, EdgeAttribution};
use super::{sender_acts, Corruption, Problem, SenderActs};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::backward::{Grads, Want};
use crate::model::{GimRules, Positions};

/// EAP-IG (Hanna et al. 2024, as MIB runs it): the receiver gradients averaged over `steps`
/// forward/backward passes whose input embeddings go from the corrupt prompt's to the clean
/// prompt's, `e_corrupt + (k / steps)·(e_clean − e_corrupt)` for k = 0 … steps − 1 (EAP-IG's
/// left Riemann sum: the corrupt point is one of the steps, the clean one is not), times the
/// clean − corrupt sender outputs of the two real runs. `rules` are the backward rules at each
/// step (`GimRules::off()` for EAP-IG itself). Needs a corrupt prompt.
pub fn edge_attribution_ig(
    m: &LoadedModel,
    p: &Problem,
    rules: GimRules,
    steps: usize,
) -> Result<EdgeAttribution> {
    p.validate(m)?;
    let Corruption::Prompt(corrupt_ids) = &p.corrupt else {
        return Err(GimError::input(
            "integrated gradients interpolates between the clean and corrupt inputs: give a corrupt prompt, not --zero/--mean",
        ));
    };
    if steps == 0 {
        return Err(GimError::input("--ig-steps must be at least 1"));
    }
    let model = &m.model;
    let clean = sender_acts(m, &p.clean)?;
    let corr = sender_acts(m, corrupt_ids)?;
    let metric_of = |a: &SenderActs| -> Result<f64> {
        a.metric(m, p)?
            .ok_or_else(|| GimError::input("internal: no hidden state"))
    };
    let (metric_clean, metric_corrupt) = (metric_of(&clean)?, metric_of(&corr)?);
    let e_clean = model.embed_ids(std::slice::from_ref(&p.clean))?;
    let e_corr = model.embed_ids(std::slice::from_ref(corrupt_ids))?;
    let delta = (&e_clean - &e_corr)?;
    let want = Want {
        nodes: false,
        receivers: true,
    };
    // steps per batch: keep a batch's traced activations to a few hundred MB
    let cfg = &model.cfg;
    let per_row = cfg.n_layers
        * (3 * cfg.d_mlp + 10 * cfg.d_model + 2 * cfg.n_heads * p.clean.len())
        * p.clean.len()
        * 4;
    let chunk = ((512usize << 20) / per_row.max(1)).clamp(1, 16);
    let mut total: Option<Grads> = None;
    let mut k0 = 0;
    while k0 < steps {
        crate::interrupt::check()?;
        let k1 = (k0 + chunk).min(steps);
        let alphas: Vec<f32> = (k0..k1).map(|k| k as f32 / steps as f32).collect();
        let a =
            Tensor::from_vec(alphas, (k1 - k0, 1, 1), &model.device)?.to_dtype(e_clean.dtype())?;
        let batch = e_corr.broadcast_add(&delta.broadcast_mul(&a)?)?;
        let t = model.forward_traced(&batch, rules, Positions::Last, None)?;
        let hv = Var::from_tensor(&t.hidden)?;
        let val = p.metric_rows(m, hv.as_tensor())?;
        let gs = val.sum_all()?.backward()?;
        let dh = gs
            .get(hv.as_tensor())
            .cloned()
            .ok_or_else(|| GimError::input("internal: no gradient at the final hidden state"))?;
        let g = summed_over_batch(model.backward(&t, &dh, want)?)?;
        total = Some(match total {
            None => g,
            Some(acc) => add_grads(acc, g)?,
        });
        k0 = k1;
    }
    let total = total.ok_or_else(|| GimError::input("internal: no IG steps"))?;
    let g = scale_grads(total, 1.0 / steps as f64)?;
    Ok(EdgeAttribution {
        edges: score_edges(m, clean, corr, g)?,
        metric_clean,
        metric_corrupt,
        rules,
    })
}

/// The receiver gradients of a batch summed over its rows (`[1, …]` like a one-row batch).
fn summed_over_batch(g: Grads) -> Result<Grads> {
    map_grads(g, |t| Ok(t.sum_keepdim(0)?))
}

fn map_grads(g: Grads, f: impl Fn(Tensor) -> Result<Tensor>) -> Result<Grads> {
    let all = |v: Vec<Tensor>| v.into_iter().map(&f).collect::<Result<Vec<_>>>();
    Ok(Grads {
        embed: None,
        at: Default::default(),
        q_input: all(g.q_input)?,
        k_input: all(g.k_input)?,
        v_input: all(g.v_input)?,
        mlp_input: all(g.mlp_input)?,
        logits_input: g.logits_input.map(&f).transpose()?,
    })
}

fn scale_grads(g: Grads, c: f64) -> Result<Grads> {
    map_grads(g, |t| Ok((t * c)?))
}

fn add_grads(a: Grads, b: Grads) -> Result<Grads> {
    let add = |x: Vec<Tensor>, y: Vec<Tensor>| -> Result<Vec<Tensor>> {
        x.into_iter().zip(y).map(|(x, y)| Ok((x + y)?)).collect()
    };
    let logits_input = match (a.logits_input, b.logits_input) {
        (Some(x), Some(y)) => Some((x + y)?),
        _ => None,
    };
    Ok(Grads {
        embed: None,
        at: Default::default(),
        q_input: add(a.q_input, b.q_input)?,
        k_input: add(a.k_input, b.k_input)?,
        v_input: add(a.v_input, b.v_input)?,
        mlp_input: add(a.mlp_input, b.mlp_input)?,
        logits_input,
    })
}
