//! Many requests at once: gradient methods with single-token targets go through the model as
//! one left-padded batch; the others run one by one.

use candle_core::{DType, IndexOp, Tensor, Var};

use super::methods::{attribute, baseline_embeds, dot_last, objective, plan, result, Plan};
use super::{AttributeRequest, Attribution};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::backward::Want;
use crate::model::{GimRules, Positions};

/// Attribute many requests. Gradient methods with single-token targets are batched through the
/// model (left padding); others run one by one. `progress` is called after each request.
pub fn attribute_many(
    m: &LoadedModel,
    reqs: &[AttributeRequest],
    batch_size: usize,
    mut progress: impl FnMut(usize),
) -> Vec<Result<Attribution>> {
    let mut out: Vec<Option<Result<Attribution>>> = (0..reqs.len()).map(|_| None).collect();
    let mut done = 0;
    let batchable = |r: &AttributeRequest| r.method.times_baseline_delta() && r.position.is_none();
    let idx: Vec<usize> = (0..reqs.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        if crate::interrupt::requested() {
            break;
        }
        let plans: Vec<(usize, Result<Plan>)> =
            chunk.iter().map(|&i| (i, plan(m, &reqs[i]))).collect();
        let same = chunk.iter().all(|&i| {
            batchable(&reqs[i])
                && reqs[i].method == reqs[chunk[0]].method
                && reqs[i].rules == reqs[chunk[0]].rules
        }) && plans
            .iter()
            .all(|(_, p)| p.as_ref().map(|p| p.positions.len() == 1).unwrap_or(false));
        if same && chunk.len() > 1 {
            let ok: Vec<(usize, Plan)> = plans
                .into_iter()
                .filter_map(|(i, p)| p.ok().map(|p| (i, p)))
                .collect();
            match batched(
                m,
                &ok,
                reqs[chunk[0]].method.rules(&reqs[chunk[0]].rules),
                &reqs[chunk[0]],
            ) {
                Ok(results) => {
                    for (i, r) in results {
                        out[i] = Some(Ok(r));
                    }
                }
                Err(_) => {
                    for &(i, _) in &ok {
                        out[i] = Some(attribute(m, &reqs[i]));
                    }
                }
            }
            done += chunk.len();
            progress(done);
        } else {
            for &i in chunk {
                out[i] = Some(attribute(m, &reqs[i]));
                done += 1;
                progress(done);
            }
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(GimError::input("request was not processed"))))
        .collect()
}

/// One left-padded batch of single-position gradient attributions.
fn batched(
    m: &LoadedModel,
    plans: &[(usize, Plan)],
    rules: GimRules,
    proto: &AttributeRequest,
) -> Result<Vec<(usize, Attribution)>> {
    let model = &m.model;
    let s = plans.iter().map(|(_, p)| p.ids.len()).max().unwrap_or(0);
    let pad_id = plans[0].1.baseline_id.unwrap_or(0);
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for (_, p) in plans {
        let n = p.ids.len();
        let mut row = vec![pad_id; s - n];
        row.extend_from_slice(&p.ids);
        ids.push(row);
        let mut mr = vec![0u8; s - n];
        mr.extend(std::iter::repeat_n(1u8, n));
        mask.push(mr);
    }
    let x = model.embed_ids(&ids)?;
    let t = model.forward_traced(&x, rules, Positions::Last, Some(mask))?;
    let hv = Var::from_tensor(&t.hidden)?;
    let h = hv.as_tensor();
    let mut vals = Vec::new();
    let mut targets = Vec::new();
    for (r, (_, p)) in plans.iter().enumerate() {
        let (v, tg) = objective(m, &h.i(r..r + 1)?, p)?;
        vals.push(v);
        targets.push(tg);
    }
    let vals = Tensor::cat(&vals, 0)?;
    let grads = vals.sum_all()?.backward()?;
    let dh = grads
        .get(h)
        .cloned()
        .ok_or_else(|| GimError::input("internal error: no gradient at the final hidden state"))?;
    let g = model
        .backward(&t, &dh, Want::default())?
        .embed
        .ok_or_else(|| {
            GimError::input("internal error: no gradient reached the input embeddings")
        })?;
    let v: Vec<f64> = vals.to_dtype(DType::F64)?.to_vec1()?;
    let mut out = Vec::new();
    for (r, (i, p)) in plans.iter().enumerate() {
        let n = p.ids.len();
        let xr = x.i((r..r + 1, s - n..s))?;
        let gr = g.i((r..r + 1, s - n..s))?;
        let base = baseline_embeds(m, p, &xr)?;
        let scores = dot_last(&gr, &(&xr - base)?)?;
        out.push((
            *i,
            result(m, p, proto.method, rules, scores, v[r], targets[r]),
        ));
    }
    Ok(out)
}
