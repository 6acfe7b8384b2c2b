//! `gim bench`: side-by-side timings of forward passes and attribution methods on
//! random-weight models shaped like real ones. Ratios are measured in the same run.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::attribution::{attribute, AttributeRequest, Baseline, Method, TargetSpec};
use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::init::{init_weights, Init};
use crate::model::{ModelConfig, Positions, Transformer};
use crate::tokenizer::Tok;

/// Config JSON of a named shape.
pub fn shape_config(name: &str) -> Result<ModelConfig> {
    let v = match name {
        "gpt2-small" => {
            serde_json::json!({"model_type": "gpt2", "n_embd": 768, "n_head": 12, "n_layer": 12,
            "n_positions": 1024, "vocab_size": 50257, "activation_function": "gelu_new"})
        }
        "llama-1b" => {
            serde_json::json!({"model_type": "llama", "hidden_size": 2048, "num_attention_heads": 32,
            "num_key_value_heads": 8, "num_hidden_layers": 16, "intermediate_size": 8192, "vocab_size": 128256,
            "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
            "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})
        }
        "tiny" => {
            serde_json::json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 256,
            "max_position_embeddings": 512})
        }
        other => {
            return Err(GimError::input(format!(
                "unknown shape `{other}` (gpt2-small, llama-1b, tiny)"
            )))
        }
    };
    ModelConfig::from_hf(&v)
}

/// A word-level tokenizer over `<tokN>` pieces, for models that have no tokenizer of their own.
pub fn placeholder_tokenizer(vocab: usize) -> Result<Tok> {
    use tokenizers::models::wordlevel::WordLevel;
    let map: std::collections::HashMap<String, u32> = (0..vocab as u32)
        .map(|i| (format!("<tok{i}>"), i))
        .collect();
    let wl = WordLevel::builder()
        .vocab(map.into_iter().collect())
        .unk_token("<tok0>".into())
        .build()
        .map_err(|e| GimError::Tokenizer(e.to_string()))?;
    Ok(Tok::from_tokenizer(tokenizers::Tokenizer::new(wl)))
}

/// A random-weight model of a named shape (weights ~ N(0, 0.02)).
pub fn random_model(shape: &str, dtype: DType, device: &Device) -> Result<LoadedModel> {
    let cfg = shape_config(shape)?;
    let w = init_weights(&cfg, &mut |_, dims, init| {
        Ok(match init {
            Init::Normal(s) => Tensor::randn(0f32, s as f32, dims, device)?.to_dtype(dtype)?,
            Init::Zeros => Tensor::zeros(dims, dtype, device)?,
            Init::NormScale => Tensor::ones(dims, dtype, device)?,
        })
    })?;
    let tok = placeholder_tokenizer(cfg.vocab_size.min(1000))?;
    Ok(LoadedModel {
        name: format!("random-{shape}"),
        source: std::path::PathBuf::from(format!("random:{shape}")),
        model: Transformer::new(cfg, w, device.clone(), dtype),
        tok,
    })
}

/// One row of the benchmark table.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub shape: String,
    pub tokens: usize,
    pub method: String,
    pub median_ms: f64,
    pub ratio_to_forward: f64,
    pub tokens_per_s: f64,
    pub peak_rss_mb: f64,
}

/// Peak resident set size of this process so far (Linux), in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Time `f` `reps` times after one warm-up; median in ms.
pub fn time_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(v))
}

/// Run the benchmark for one model and sequence length; "forward" is always measured first.
pub fn bench_model(
    m: &LoadedModel,
    tokens: usize,
    methods: &[String],
    reps: usize,
) -> Result<Vec<BenchRow>> {
    let ids: Vec<u32> = (0..tokens)
        .map(|i| (7 + 13 * i as u32) % m.model.cfg.vocab_size as u32)
        .collect();
    let fwd = time_ms(reps, || {
        let l = m
            .model
            .logits(std::slice::from_ref(&ids), Positions::Last)?;
        let _ = l.flatten_all()?.to_vec1::<f32>()?;
        Ok(())
    })?;
    let mut rows = vec![row(m, tokens, "forward", fwd, fwd)];
    for name in methods {
        if name == "forward" {
            continue;
        }
        let ms = if name == "edges" {
            continue;
        } else {
            let method = Method::parse(name)?;
            let mut req = AttributeRequest::new(ids.clone());
            req.method = method;
            req.target = TargetSpec::Id(1);
            req.baseline = Baseline::Id(0);
            let r = if method == Method::Occlusion { 1 } else { reps };
            time_ms(r, || attribute(m, &req).map(|_| ()))?
        };
        rows.push(row(m, tokens, name, ms, fwd));
    }
    Ok(rows)
}

fn row(m: &LoadedModel, tokens: usize, method: &str, ms: f64, fwd: f64) -> BenchRow {
    BenchRow {
        shape: m.name.trim_start_matches("random-").to_string(),
        tokens,
        method: method.to_string(),
        median_ms: ms,
        ratio_to_forward: ms / fwd,
        tokens_per_s: tokens as f64 / (ms / 1e3),
        peak_rss_mb: peak_rss_mb(),
    }
}

/// A markdown table of rows.
pub fn table(rows: &[BenchRow]) -> String {
    let mut s = String::from("| shape | tokens | method | median ms | × forward | tokens/s | peak RSS MB |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.2} | {:.0} | {:.0} |\n",
            r.shape,
            r.tokens,
            r.method,
            r.median_ms,
            r.ratio_to_forward,
            r.tokens_per_s,
            r.peak_rss_mb
        ));
    }
    s
}
