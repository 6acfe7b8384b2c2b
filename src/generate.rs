//! Greedy, deterministic continuation with a key/value cache: each new token runs one position
//! against the cached keys and values of every earlier one (`ForwardOpts::prefix`).

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::{Cache, ForwardOpts, HookPoint, Positions, Prefix};

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The model produced an end-of-sequence token (kept in `ids`, left out of `text`).
    Eos,
    /// `max_tokens` were produced.
    MaxTokens,
    /// The model's context is full.
    Context,
}

/// A greedy continuation of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The text the model saw (after any chat template).
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    /// The generated ids, in order.
    pub ids: Vec<u32>,
    /// Each generated id as text.
    pub tokens: Vec<String>,
    /// The generated text (end-of-sequence tokens left out).
    pub text: String,
    pub stop: Stop,
}

/// The token ids that end a turn: `eos_token_id` of `generation_config.json` and `config.json`
/// (one id or a list), the `eos_token` of `tokenizer_config.json`, a GGUF file's
/// `tokenizer.ggml.eos_token_id`, and the names chat models use for the end of a turn.
pub fn eos_ids(m: &LoadedModel) -> Vec<u32> {
    const NAMES: &[&str] = &["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"];
    let mut ids: Vec<u32> = NAMES.iter().filter_map(|n| m.tok.token_to_id(n)).collect();
    let read = |f: &str| -> Option<serde_json::Value> {
        let t = std::fs::read_to_string(m.source.join(f)).ok()?;
        serde_json::from_str(&t).ok()
    };
    if m.source.is_dir() {
        for f in ["generation_config.json", "config.json"] {
            match read(f).as_ref().and_then(|v| v.get("eos_token_id")) {
                Some(serde_json::Value::Number(n)) => ids.extend(n.as_u64().map(|i| i as u32)),
                Some(serde_json::Value::Array(a)) => {
                    ids.extend(a.iter().filter_map(|v| v.as_u64()).map(|i| i as u32))
                }
                _ => {}
            }
        }
        let eos = read("tokenizer_config.json").and_then(|v| match v.get("eos_token") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(o) => o
                .get("content")
                .and_then(|c| c.as_str())
                .map(str::to_string),
            None => None,
        });
        ids.extend(eos.and_then(|e| m.tok.token_to_id(&e)));
    } else if let Some(id) = crate::chat::gguf_u32(&m.source, "tokenizer.ggml.eos_token_id") {
        ids.push(id);
    }
    ids.retain(|&i| (i as usize) < m.model.cfg.vocab_size);
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The id of the largest value; ties go to the lowest id, so runs are reproducible.
fn argmax(row: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i as u32)
}

/// Run `ids` (one row) after `prefix`, returning the last position's logits and the keys and
/// values of every position so far.
fn step(m: &LoadedModel, ids: &[u32], prefix: Option<&Prefix>) -> Result<(Vec<f32>, Prefix)> {
    let model = &m.model;
    let mut cache = Cache::new(|h| matches!(h, HookPoint::K(_) | HookPoint::V(_)));
    let e = model.embed_ids(&[ids.to_vec()])?;
    let h = {
        let mut opts = ForwardOpts {
            positions: Positions::Last,
            hooks: Some(&mut cache),
            prefix,
            ..Default::default()
        };
        model.forward_hidden(&e, &mut opts)?
    };
    let logits = model
        .unembed(&h)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let n_layers = model.cfg.n_layers;
    let mut kv = Vec::with_capacity(n_layers);
    for l in 0..n_layers {
        let k = cache.get(HookPoint::K(l))?;
        let v = cache.get(HookPoint::V(l))?;
        kv.push(match prefix.and_then(|p| p.kv.get(l)) {
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 1)?, Tensor::cat(&[pv, v], 1)?),
            None => (k.clone(), v.clone()),
        });
    }
    let offset = prefix.map(|p| p.offset).unwrap_or(0) + ids.len();
    Ok((logits, Prefix { offset, kv }))
}

/// Greedy continuation of `prompt_ids` by up to `max_tokens` tokens. `on_token` sees the ids so
/// far after each new one (streaming) and may stop the run with an error (an interrupt).
pub fn generate(
    m: &LoadedModel,
    prompt_ids: &[u32],
    max_tokens: usize,
    stop_ids: &[u32],
    mut on_token: impl FnMut(&[u32]) -> Result<()>,
) -> Result<(Vec<u32>, Stop)> {
    if prompt_ids.is_empty() {
        return Err(GimError::input(
            "the prompt is empty: give at least one token",
        ));
    }
    let n_ctx = m.model.cfg.n_ctx;
    let mut out = Vec::new();
    let (mut logits, mut cache) = step(m, prompt_ids, None)?;
    loop {
        if out.len() >= max_tokens {
            return Ok((out, Stop::MaxTokens));
        }
        crate::interrupt::check()?;
        let next =
            argmax(&logits).ok_or_else(|| GimError::input("the model produced no finite logit"))?;
        out.push(next);
        on_token(&out)?;
        if stop_ids.contains(&next) {
            return Ok((out, Stop::Eos));
        }
        if out.len() >= max_tokens {
            return Ok((out, Stop::MaxTokens));
        }
        if cache.offset + 1 > n_ctx {
            return Ok((out, Stop::Context));
        }
        (logits, cache) = step(m, &[next], Some(&cache))?;
    }
}

/// The model's own next `n` tokens after `ids` (greedy; an end-of-sequence token ends them early
/// and is not part of the target).
pub fn continuation(m: &LoadedModel, ids: &[u32], n: usize) -> Result<Vec<u32>> {
    if n == 0 {
        return Err(GimError::input("--target-generated needs at least 1 token"));
    }
    let stop = eos_ids(m);
    let (mut gen, _) = generate(m, ids, n, &stop, |_| Ok(()))?;
    gen.retain(|t| !stop.contains(t));
    if gen.is_empty() {
        return Err(GimError::input(
            "the model ends its turn at once: there is no continuation to attribute",
        ));
    }
    Ok(gen)
}

/// The text of generated ids, without end-of-sequence tokens.
pub fn decode(m: &LoadedModel, ids: &[u32], stop_ids: &[u32]) -> String {
    let kept: Vec<u32> = ids
        .iter()
        .copied()
        .filter(|i| !stop_ids.contains(i))
        .collect();
    m.tok.decode(&kept)
}

/// Greedy continuation of `prompt` as a [`Generation`], ending at any of `stop_ids` (usually
/// [`eos_ids`], which callers look up once: for a GGUF file it reads the file's metadata).
pub fn continue_text(
    m: &LoadedModel,
    prompt: &str,
    max_tokens: usize,
    stop_ids: &[u32],
    on_token: impl FnMut(&[u32]) -> Result<()>,
) -> Result<Generation> {
    let prompt_ids = m.tok.encode(prompt, true)?;
    let (ids, stop) = generate(m, &prompt_ids, max_tokens, stop_ids, on_token)?;
    Ok(Generation {
        prompt: prompt.to_string(),
        tokens: ids.iter().map(|&i| m.tok.decode_one(i)).collect(),
        text: decode(m, &ids, stop_ids),
        prompt_ids,
        ids,
        stop,
    })
}

/// Greedy continuation by full forwards, no cache: the reference the cached path is tested
/// against.
pub fn generate_uncached(m: &LoadedModel, prompt_ids: &[u32], n: usize) -> Result<Vec<u32>> {
    let mut ids = prompt_ids.to_vec();
    for _ in 0..n {
        let logits = m
            .model
            .logits(std::slice::from_ref(&ids), Positions::Last)?
            .to_dtype(DType::F32)?
            .squeeze(0)?
            .squeeze(0)?;
        let next = logits.argmax(D::Minus1)?.to_scalar::<u32>()?;
        ids.push(next);
    }
    Ok(ids.split_off(prompt_ids.len()))
}
