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
    let mut w = init_weights(&cfg, &mut |_, dims, init| {
        Ok(match init {
            Init::Normal(s) => Tensor::randn(0f32, s as f32, dims, device)?.to_dtype(dtype)?,
            Init::Zeros => Tensor::zeros(dims, dtype, device)?,
            Init::NormScale => Tensor::ones(dims, dtype, device)?,
        })
    })?;
    w.pack()?;
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

/// Time `f` `reps` times, after one warm-up run when `reps` > 1 (a single repetition of a
/// minutes-long method is timed as it comes: the forward measured first has paged the weights in);
/// median in ms.
pub fn time_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    if reps > 1 {
        f()?;
    }
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(v))
}

/// The real English paragraph a real checkpoint is timed on (about 100 tokens; the same text as
/// `tools/torch_bench.py --model`).
pub const BENCH_PARAGRAPH: &str = "When the tower opened in the spring of 1889, many artists in the city signed letters against it, calling it a useless and monstrous iron skeleton that would spoil the view of the old streets. The engineers answered that the structure was a triumph of modern science, and the crowds who climbed its stairs during the World's Fair seemed to agree with them. The tower was designed by the engineering company of Gustave Eiffel, and for forty-one years it was the tallest structure in the world.";

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
    bench_ids(m, &ids, methods, reps)
}

/// Run the benchmark for one model on these token ids (a real prompt on a real checkpoint).
pub fn bench_ids(
    m: &LoadedModel,
    ids: &[u32],
    methods: &[String],
    reps: usize,
) -> Result<Vec<BenchRow>> {
    let tokens = ids.len();
    let ids = ids.to_vec();
    let fwd = time_ms(reps, || {
        let l = m
            .model
            .logits(std::slice::from_ref(&ids), Positions::Last)?;
        // read the logits back (in f32, whatever the model's dtype) so the work is done
        let _ = l.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        Ok(())
    })?;
    let mut rows = vec![row(m, tokens, "forward", fwd, fwd)];
    for name in methods {
        if name == "forward" {
            continue;
        }
        let ms = if name == "edges" {
            // all edges of the model from one clean forward, one corrupt forward and one backward
            let mut corrupt = ids.clone();
            for i in (1..corrupt.len()).step_by(3) {
                corrupt[i] = (corrupt[i] + 1) % m.model.cfg.vocab_size as u32;
            }
            let p = crate::circuit::Problem {
                clean: ids.clone(),
                corrupt: crate::circuit::Corruption::Prompt(corrupt),
                target: 1,
                foil: Some(2),
            };
            time_ms(reps, || {
                crate::circuit::edge_attribution(m, &p, crate::model::GimRules::gim()).map(|_| ())
            })?
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

/// How each method's cost grows with sequence length: per shape and method measured at two or
/// more lengths, the time ratio between consecutive lengths and its exponent `log(t₂/t₁) /
/// log(n₂/n₁)` (1 = linear in tokens, 2 = quadratic). Empty when no method has two lengths.
pub fn growth(rows: &[BenchRow]) -> String {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !keys.contains(&(r.shape.as_str(), r.method.as_str())) {
            keys.push((r.shape.as_str(), r.method.as_str()));
        }
    }
    let mut lines = Vec::new();
    for (shape, method) in keys {
        let mut pts: Vec<(usize, f64)> = rows
            .iter()
            .filter(|r| r.shape == shape && r.method == method)
            .map(|r| (r.tokens, r.median_ms))
            .collect();
        pts.sort_by_key(|p| p.0);
        pts.dedup_by_key(|p| p.0);
        if pts.len() < 2 {
            continue;
        }
        let steps: Vec<String> = pts
            .windows(2)
            .map(|w| {
                let (n1, t1) = w[0];
                let (n2, t2) = w[1];
                let k = (t2 / t1).ln() / (n2 as f64 / n1 as f64).ln();
                format!("{n1}→{n2} tokens ×{:.2} (∝ n^{k:.2})", t2 / t1)
            })
            .collect();
        lines.push(format!("{shape} {method}: {}", steps.join(", ")));
    }
    if lines.is_empty() {
        return String::new();
    }
    format!("cost growth with sequence length:\n{}\n", lines.join("\n"))
}

/// Save a random-weight GPT-2-shaped model as an ordinary HF checkpoint (Conv1D layout) with a
/// whitespace word-level tokenizer over `<tokN>` pieces.
pub fn save_random_gpt2(shape: &str, dir: &std::path::Path) -> Result<()> {
    use std::collections::HashMap;
    let m = random_model(shape, DType::F32, &Device::Cpu)?;
    let c = &m.model.cfg;
    if c.weights != crate::model::config::WeightLayout::Gpt2 {
        return Err(GimError::input(format!("{shape} is not a GPT-2 shape")));
    }
    let io = |e: std::io::Error| GimError::Io(e.to_string());
    std::fs::create_dir_all(dir).map_err(io)?;
    let w = &m.model.w;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let conv = |l: &crate::model::weights::LinearW| -> Result<Tensor> {
        Ok(l.w.tensor()?.t()?.contiguous()?)
    };
    t.insert("wte.weight".into(), w.embed.clone());
    if let Some(p) = &w.pos_embed {
        t.insert("wpe.weight".into(), p.clone());
    }
    t.insert("ln_f.weight".into(), w.ln_final.w.clone());
    if let Some(b) = &w.ln_final.b {
        t.insert("ln_f.bias".into(), b.clone());
    }
    for (l, b) in w.blocks.iter().enumerate() {
        let p = format!("h.{l}");
        let qkv_w = Tensor::cat(
            &[&conv(&b.attn.q)?, &conv(&b.attn.k)?, &conv(&b.attn.v)?],
            1,
        )?;
        let bias = |x: &crate::model::weights::LinearW| {
            x.b.clone()
                .ok_or_else(|| GimError::input("gpt2 linear without bias"))
        };
        let qkv_b = Tensor::cat(
            &[&bias(&b.attn.q)?, &bias(&b.attn.k)?, &bias(&b.attn.v)?],
            0,
        )?;
        t.insert(format!("{p}.attn.c_attn.weight"), qkv_w);
        t.insert(format!("{p}.attn.c_attn.bias"), qkv_b);
        t.insert(format!("{p}.attn.c_proj.weight"), conv(&b.attn.o)?);
        t.insert(format!("{p}.attn.c_proj.bias"), bias(&b.attn.o)?);
        t.insert(format!("{p}.mlp.c_fc.weight"), conv(&b.mlp.up)?);
        t.insert(format!("{p}.mlp.c_fc.bias"), bias(&b.mlp.up)?);
        t.insert(format!("{p}.mlp.c_proj.weight"), conv(&b.mlp.down)?);
        t.insert(format!("{p}.mlp.c_proj.bias"), bias(&b.mlp.down)?);
        for (name, n) in [("ln_1", &b.ln1), ("ln_2", &b.ln2)] {
            t.insert(format!("{p}.{name}.weight"), n.w.clone());
            if let Some(bb) = &n.b {
                t.insert(format!("{p}.{name}.bias"), bb.clone());
            }
        }
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors"))?;
    let cfg = serde_json::json!({"model_type": "gpt2", "n_embd": c.d_model, "n_head": c.n_heads, "n_layer": c.n_layers,
        "n_positions": c.n_ctx, "vocab_size": c.vocab_size, "n_inner": c.d_mlp, "activation_function": "gelu_new"});
    std::fs::write(dir.join("config.json"), cfg.to_string()).map_err(io)?;
    use tokenizers::models::wordlevel::WordLevel;
    let vocab: std::collections::HashMap<String, u32> =
        (0..1000u32).map(|i| (format!("<tok{i}>"), i)).collect();
    let wl = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("<tok0>".into())
        .build()
        .map_err(|e| GimError::Tokenizer(e.to_string()))?;
    let mut tk = tokenizers::Tokenizer::new(wl);
    tk.with_pre_tokenizer(Some(
        tokenizers::pre_tokenizers::whitespace::WhitespaceSplit,
    ));
    tk.save(dir.join("tokenizer.json"), false)
        .map_err(|e| GimError::Tokenizer(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, tokens: usize, ms: f64) -> BenchRow {
        BenchRow {
            shape: "s".into(),
            tokens,
            method: method.into(),
            median_ms: ms,
            ratio_to_forward: 1.0,
            tokens_per_s: 0.0,
            peak_rss_mb: 0.0,
        }
    }

    #[test]
    fn growth_reports_the_exponent_between_consecutive_lengths() {
        let rows = [
            row("gim", 64, 40.0),
            row("gim", 16, 10.0),
            row("gim", 256, 640.0),
            row("edges", 16, 5.0),
        ];
        let g = growth(&rows);
        assert_eq!(
            g,
            "cost growth with sequence length:\ns gim: 16→64 tokens ×4.00 (∝ n^1.00), \
             64→256 tokens ×16.00 (∝ n^2.00)\n"
        );
        assert_eq!(growth(&rows[3..]), "");
    }

    #[test]
    fn every_method_runs_on_a_bf16_model() {
        let m = random_model("tiny", DType::BF16, &Device::Cpu).unwrap();
        let methods: Vec<String> = ["gim", "integrated-gradients", "occlusion", "edges"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let rows = bench_model(&m, 8, &methods, 1).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(
            names,
            [
                "forward",
                "gim",
                "integrated-gradients",
                "occlusion",
                "edges"
            ]
        );
        assert!(rows
            .iter()
            .all(|r| r.median_ms > 0.0 && r.median_ms.is_finite()));
    }
}
