//! The attribution methods over one shared gradient core: a request's plan (target ids and
//! positions), the objective, the gradient (either engine), and `attribute` dispatching on the
//! method (integrated gradients, occlusion and batching have their own files).

use candle_core::{DType, IndexOp, Tensor, Var, D};

use super::integrated::integrated_gradients;
use super::occlusion::occlusion;
use super::target::text_ids;
use super::{AttributeRequest, Attribution, Method, Objective, TargetSpec};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::backward::Want;
use crate::model::{ForwardOpts, GimRules, Hook, Positions, Prefix};

/// A request with its target resolved to token ids and positions.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// input ids (prompt, plus the teacher-forced prefix of a multi-token target)
    pub(super) ids: Vec<u32>,
    /// how many of `ids` are the user's prompt
    pub(super) n_prompt: usize,
    /// positions whose predictions form the objective
    pub(super) positions: Vec<usize>,
    /// target token per position (`None`: argmax, only with one position)
    pub(super) targets: Vec<Option<u32>>,
    pub(super) contrast: Option<u32>,
    pub(super) objective: Objective,
    pub(super) baseline_id: Option<u32>,
    pub(super) note: Option<String>,
}

impl Plan {
    /// The same plan with its argmax targets fixed to `t` (the clean run's prediction), so that
    /// later forwards of changed inputs explain the same token.
    pub(super) fn with_targets(&self, t: u32) -> Plan {
        Plan {
            targets: self.targets.iter().map(|x| Some(x.unwrap_or(t))).collect(),
            ..self.clone()
        }
    }
}

pub(super) fn plan(m: &LoadedModel, req: &AttributeRequest) -> Result<Plan> {
    let cfg = &m.model.cfg;
    let s = req.ids.len();
    if s == 0 {
        return Err(GimError::input(
            "the prompt is empty: give at least one token",
        ));
    }
    if let Some(&bad) = req.ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
        return Err(GimError::input(format!(
            "token id {bad} is outside the vocabulary (size {})",
            cfg.vocab_size
        )));
    }
    let position = match req.position {
        None => s - 1,
        Some(p) if p < 0 && (-p) as usize <= s => s - (-p) as usize,
        Some(p) if p >= 0 && (p as usize) < s => p as usize,
        Some(p) => {
            return Err(GimError::input(format!(
                "position {p} is out of range for a prompt of {s} tokens (use 0..{} or negative from the end)",
                s - 1
            )))
        }
    };
    let single_id = |id: u32, what: &str| -> Result<Option<u32>> {
        if id as usize >= cfg.vocab_size {
            return Err(GimError::input(format!(
                "{what} id {id} is outside the vocabulary (size {})",
                cfg.vocab_size
            )));
        }
        Ok(Some(id))
    };
    let single = |spec: &TargetSpec, what: &str| -> Result<Option<u32>> {
        match spec {
            TargetSpec::Argmax => Ok(None),
            TargetSpec::Id(id) => single_id(*id, what),
            TargetSpec::Text(t) => {
                let ids = text_ids(&m.tok, t, what)?;
                Ok(Some(ids[0]))
            }
            TargetSpec::Ids(ids) => match ids.as_slice() {
                [id] => single_id(*id, what),
                _ => Err(GimError::input(format!(
                    "the {what} must be one token here, not {}",
                    ids.len()
                ))),
            },
        }
    };
    let contrast = match &req.contrast {
        None => None,
        Some(TargetSpec::Argmax) => {
            return Err(GimError::input("a contrast must name a token (text or id)"))
        }
        Some(TargetSpec::Text(t)) => {
            let ids = text_ids(&m.tok, t, "contrast")?;
            if ids.len() > 1 {
                return Err(GimError::input(format!(
                    "the contrast {t:?} is {} tokens; contrasts must be one token (use --contrast-id)",
                    ids.len()
                )));
            }
            Some(ids[0])
        }
        Some(spec) => single(spec, "contrast")?,
    };
    let baseline_id = req.baseline.resolve(m)?;
    let forced = match &req.target {
        TargetSpec::Text(t) => Some((text_ids(&m.tok, t, "target")?, format!("{t:?}"))),
        TargetSpec::Ids(v) => {
            if v.is_empty() {
                return Err(GimError::input("the target has no tokens"));
            }
            for &id in v {
                single_id(id, "target")?;
            }
            Some((v.clone(), format!("{:?}", m.tok.decode(v))))
        }
        _ => None,
    };
    if let Some((tids, t)) = forced {
        if tids.len() > 1 {
            if position != s - 1 {
                return Err(GimError::input(
                    "a multi-token target is teacher-forced after the last token; drop --position",
                ));
            }
            let mut ids = req.ids.clone();
            ids.extend_from_slice(&tids[..tids.len() - 1]);
            if ids.len() > cfg.n_ctx {
                return Err(GimError::input(format!(
                    "prompt plus target is {} tokens but the model's context is {}",
                    ids.len(),
                    cfg.n_ctx
                )));
            }
            return Ok(Plan {
                positions: (0..tids.len()).map(|j| s - 1 + j).collect(),
                targets: tids.iter().map(|&t| Some(t)).collect(),
                ids,
                n_prompt: s,
                contrast,
                objective: Objective::LogProb,
                baseline_id,
                note: Some(format!(
                    "target {t} is {} tokens: attributed the sum of their teacher-forced log-probabilities; the last {} input tokens are the forced target prefix",
                    tids.len(),
                    tids.len() - 1
                )),
            });
        }
    }
    if s > cfg.n_ctx {
        return Err(GimError::input(format!(
            "the prompt has {s} tokens but the model's context is {} tokens; shorten it",
            cfg.n_ctx
        )));
    }
    Ok(Plan {
        ids: req.ids.clone(),
        n_prompt: s,
        positions: vec![position],
        targets: vec![single(&req.target, "target")?],
        contrast,
        objective: req.objective,
        baseline_id,
        note: None,
    })
}

fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Objective per row from final hidden states `h` `[B, P, d]` (P = plan positions).
/// Resolves argmax targets from the same forward; returns (values `[B]`, resolved target).
pub(super) fn objective(m: &LoadedModel, h: &Tensor, p: &Plan) -> Result<(Tensor, u32)> {
    let model = &m.model;
    let (b, _, _) = h.dims3()?;
    let target0 = match p.targets[0] {
        Some(t) => t,
        None => {
            let logits = model.unembed(&h.i((0..1, 0..1))?.detach())?;
            let v: Vec<f32> = logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
            argmax(&v) as u32
        }
    };
    let targets: Vec<u32> = p.targets.iter().map(|t| t.unwrap_or(target0)).collect();
    let mut vals = Vec::with_capacity(b);
    for r in 0..b {
        let hr = h.i(r..r + 1)?; // [1, P, d]
        let v = match p.objective {
            Objective::Logit => {
                let mut rows = vec![targets[0]];
                rows.extend(p.contrast);
                let l = model
                    .unembed_rows(&hr.i((.., 0..1))?, &rows)?
                    .flatten_all()?;
                match p.contrast {
                    Some(_) => (l.i(0)? - l.i(1)?)?,
                    None => l.i(0)?,
                }
            }
            Objective::LogProb => {
                let lp = log_softmax(
                    &model
                        .unembed(&hr)?
                        .to_dtype(crate::model::ops::compute_dtype(hr.dtype()))?,
                )?; // [1, P, V]
                let mut total: Option<Tensor> = None;
                for (j, &t) in targets.iter().enumerate() {
                    let x = lp.i((0, j, t as usize))?;
                    total = Some(match total {
                        Some(a) => (a + x)?,
                        None => x,
                    });
                }
                let mut v = total.ok_or_else(|| GimError::input("empty target"))?;
                if let Some(f) = p.contrast {
                    v = (v - lp.i((0, 0, f as usize))?)?;
                }
                v.to_dtype(hr.dtype())?
            }
        };
        vals.push(v);
    }
    Ok((Tensor::stack(&vals, 0)?, target0))
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// How gradients are computed: the explicit backward of `model/backward.rs` (default, fast) or
/// candle autograd through the custom ops of `model/ops.rs` (the independent reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    #[default]
    Explicit,
    Autograd,
}

/// Forward embeddings `[B, s, d]` with `rules`, backward from the summed objective.
/// Returns (gradient wrt the embeddings `[B, s, d]`, objective values, target id).
pub(super) fn gradient(
    m: &LoadedModel,
    embeds: &Tensor,
    p: &Plan,
    rules: GimRules,
    engine: Engine,
) -> Result<(Tensor, Vec<f64>, u32)> {
    let positions = Positions::At(p.positions.clone());
    let (g, vals, target) = match engine {
        Engine::Explicit => {
            let t = m.model.forward_traced(embeds, rules, positions, None)?;
            let hv = Var::from_tensor(&t.hidden)?;
            let (vals, target) = objective(m, hv.as_tensor(), p)?;
            let grads = vals.sum_all()?.backward()?;
            let dh = grads.get(hv.as_tensor()).cloned().ok_or_else(|| {
                GimError::input("internal error: no gradient at the final hidden state")
            })?;
            let g = m.model.backward(&t, &dh, Want::default())?.embed;
            (g, vals, target)
        }
        Engine::Autograd => {
            let var = Var::from_tensor(embeds)?;
            let mut opts = ForwardOpts {
                rules,
                positions,
                ..Default::default()
            };
            let h = m.model.forward_hidden(var.as_tensor(), &mut opts)?;
            let (vals, target) = objective(m, &h, p)?;
            let grads = vals.sum_all()?.backward()?;
            (grads.get(var.as_tensor()).cloned(), vals, target)
        }
    };
    let g = g.ok_or_else(|| {
        GimError::input("internal error: no gradient reached the input embeddings")
    })?;
    let v: Vec<f64> = vals.to_dtype(DType::F64)?.to_vec1()?;
    Ok((g, v, target))
}

/// Objective values (no gradient) of one batch of equally long rows of ids. With a cached
/// `prefix` the rows are the positions from its offset on; `hooks` see the forward.
pub(super) fn values<'a>(
    m: &LoadedModel,
    rows: &[Vec<u32>],
    p: &Plan,
    prefix: Option<&'a Prefix>,
    hooks: Option<&'a mut dyn Hook>,
) -> Result<(Vec<f64>, u32)> {
    let offset = prefix.map_or(0, |x| x.offset);
    let mut opts = ForwardOpts {
        positions: Positions::At(p.positions.iter().map(|&q| q - offset).collect()),
        hooks,
        prefix,
        ..Default::default()
    };
    let h = m
        .model
        .forward_hidden(&m.model.embed_ids(rows)?, &mut opts)?;
    let (v, t) = objective(m, &h, p)?;
    Ok((v.to_dtype(DType::F64)?.to_vec1::<f64>()?, t))
}

/// Σ_d g · delta, per position → Vec (for row 0).
pub(super) fn dot_last(g: &Tensor, delta: &Tensor) -> Result<Vec<f64>> {
    let g = g.to_dtype(DType::F64)?;
    let d = delta.to_dtype(DType::F64)?;
    Ok(g.broadcast_mul(&d)?
        .sum(D::Minus1)?
        .flatten_all()?
        .to_vec1()?)
}

pub(super) fn baseline_embeds(m: &LoadedModel, p: &Plan, like: &Tensor) -> Result<Tensor> {
    match p.baseline_id {
        Some(b) => m.model.embed_ids(&[vec![b; p.ids.len()]]),
        None => Ok(like.zeros_like()?),
    }
}

/// SplitMix64: a tiny deterministic generator for the `random` method.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Attribute one request.
pub fn attribute(m: &LoadedModel, req: &AttributeRequest) -> Result<Attribution> {
    attribute_with(m, req, Engine::Explicit)
}

/// Attribute one request with a chosen gradient engine.
pub fn attribute_with(
    m: &LoadedModel,
    req: &AttributeRequest,
    engine: Engine,
) -> Result<Attribution> {
    req.rules.validate()?;
    if req.method == Method::IntegratedGradients && req.ig_steps == 0 {
        return Err(GimError::input(
            "integrated gradients needs at least 1 step",
        ));
    }
    let p = plan(m, req)?;
    let x = m.model.embed_ids(std::slice::from_ref(&p.ids))?;
    let rules = req.method.rules(&req.rules);
    let (scores, value, target) = match req.method {
        Method::IntegratedGradients => integrated_gradients(m, &p, &x, req.ig_steps, engine)?,
        Method::Occlusion => {
            let b = p.baseline_id.ok_or_else(|| {
                GimError::input("occlusion replaces tokens by the baseline token; a zero baseline is not possible")
            })?;
            occlusion(m, &p, b)?
        }
        Method::Random => {
            let (v0, t) = values(m, std::slice::from_ref(&p.ids), &p, None, None)?;
            let mut st = req.seed ^ 0x6A09_E667_F3BC_C908;
            let r = (0..p.ids.len())
                .map(|_| (splitmix(&mut st) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
                .collect();
            (r, v0[0], t)
        }
        // every other method: one backward pass with its rules, times (input − baseline), or
        // times the input for grad-x-input
        method => {
            let (g, v, t) = gradient(m, &x, &p, rules, engine)?;
            let delta = if method == Method::GradXInput {
                x.clone()
            } else {
                (&x - baseline_embeds(m, &p, &x)?)?
            };
            (dot_last(&g, &delta)?, v[0], t)
        }
    };
    let target_text = match &req.target {
        TargetSpec::Text(t) if p.targets.len() > 1 => t.clone(),
        TargetSpec::Ids(v) if p.targets.len() > 1 => m.tok.decode(v),
        _ => m.tok.decode_one(target),
    };
    Ok(Attribution {
        target: target_text,
        note: p.note.clone().or_else(|| {
            (p.n_prompt != p.ids.len()).then(|| "teacher-forced target prefix appended".to_string())
        }),
        ..result(m, &p, req.method, rules, scores, value, target)
    })
}

/// The attribution of `method` on `p` (target text: the resolved target token; no note).
pub(super) fn result(
    m: &LoadedModel,
    p: &Plan,
    method: Method,
    rules: GimRules,
    scores: Vec<f64>,
    value: f64,
    target: u32,
) -> Attribution {
    Attribution {
        method: method.name(),
        model_type: m.model.cfg.model_type.clone(),
        tokens: p.ids.iter().map(|&i| m.tok.decode_one(i)).collect(),
        token_ids: p.ids.clone(),
        target_id: target,
        target: m.tok.decode_one(target),
        contrast_id: p.contrast,
        contrast: p.contrast.map(|c| m.tok.decode_one(c)),
        position: p.positions[0],
        baseline_id: p.baseline_id,
        attributions: scores,
        target_logit: value,
        objective: match (p.objective, p.contrast) {
            (Objective::Logit, Some(_)) => "logit-diff".into(),
            (o, _) => o.name().into(),
        },
        settings: rules,
        note: None,
    }
}
