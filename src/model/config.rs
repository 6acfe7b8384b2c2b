//! The canonical transformer config, read from a Hugging Face `config.json`.
//!
//! Every family is translated into the same flags; a field that would change the math and
//! that we do not implement is an error naming it, never silently ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{GimError, Result};

/// The architectures (`model_type` values) we load.
pub const SUPPORTED: &[&str] = &[
    "gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    LayerNorm,
    RmsNorm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`)
    GeluTanh,
    /// exact erf GELU (`gelu`)
    Gelu,
    Silu,
    Relu,
}

/// How a family's checkpoint stores its weights: which tensor names `weights.rs` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightLayout {
    /// GPT-2: `h.N.…` names, fused `c_attn` (q, k, v) and Conv1D `[in, out]` weights.
    Gpt2,
    /// `model.layers.N.…` names, separate `q_proj`/`k_proj`/`v_proj` and `gate_proj`/`up_proj`.
    Separate,
    /// `model.layers.N.…` names, fused `qkv_proj` and `gate_up_proj` (Phi-3).
    Fused,
}

/// Positional scheme.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positional {
    /// GPT-2 learned absolute position embeddings.
    Learned,
    /// Rotary (NeoX / rotate-half layout) on the first `rotary_dim` dims of each head.
    Rotary {
        rotary_dim: usize,
        /// `inv_freq[i]`, already rescaled (llama3 scaling) where the config asks for it.
        inv_freq: Vec<f64>,
    },
}

/// One decoder config for all families.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub model_type: String,
    /// Which weight names the checkpoint has (set per family here, read by `weights.rs`).
    pub weights: WeightLayout,
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_head: usize,
    pub d_mlp: usize,
    pub n_ctx: usize,
    pub norm: NormKind,
    pub norm_eps: f64,
    /// Gemma's RMSNorm multiplies by `(1 + w)`.
    pub norm_one_plus: bool,
    pub positional: Positional,
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub gated_mlp: bool,
    pub act: Activation,
    /// Qwen3's per-head RMSNorm on q and k.
    pub qk_norm: bool,
    /// Gemma2's norms on the attention and MLP outputs.
    pub post_norms: bool,
    /// Gemma's `sqrt(d_model)` embedding scale.
    pub embed_scale: Option<f64>,
    /// Multiplier of `q·kᵀ`.
    pub attn_scale: f64,
    pub attn_softcap: Option<f64>,
    pub final_softcap: Option<f64>,
    /// Per layer: `Some(w)` when the layer uses a sliding window of `w` keys (self included).
    pub sliding_window: Vec<Option<usize>>,
    pub tie_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
}

impl ModelConfig {
    /// Parse a `config.json` text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| GimError::Config(format!("config.json is not valid JSON: {e}")))?;
        Self::from_hf(&v)
    }

    /// Translate a parsed Hugging Face config.
    pub fn from_hf(v: &Value) -> Result<Self> {
        let c = Cfg(v);
        let model_type = c.str("model_type").ok_or_else(|| {
            GimError::Config(
                "config.json has no `model_type`; is this a transformers checkpoint?".into(),
            )
        })?;
        if !SUPPORTED.contains(&model_type.as_str()) {
            return Err(GimError::Unsupported(format!(
                "model_type `{model_type}` is not supported (supported: {})",
                SUPPORTED.join(", ")
            )));
        }
        if model_type == "gpt2" {
            return gpt2(&c);
        }
        decoder(&c, &model_type)
    }

    /// Number of query heads sharing one key/value head.
    pub fn n_rep(&self) -> usize {
        self.n_heads / self.n_kv_heads.max(1)
    }
}

struct Cfg<'a>(&'a Value);

impl Cfg<'_> {
    fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }
    fn str(&self, k: &str) -> Option<String> {
        self.get(k).and_then(|v| v.as_str()).map(str::to_string)
    }
    fn f64(&self, k: &str) -> Option<f64> {
        self.get(k).and_then(|v| v.as_f64())
    }
    fn bool(&self, k: &str) -> Option<bool> {
        self.get(k).and_then(|v| v.as_bool())
    }
    fn usize(&self, k: &str) -> Option<usize> {
        self.get(k).and_then(|v| v.as_u64()).map(|x| x as usize)
    }
    fn need(&self, k: &str) -> Result<usize> {
        self.usize(k)
            .ok_or_else(|| GimError::Config(format!("config.json lacks the integer field `{k}`")))
    }
    fn token(&self, k: &str) -> Option<u32> {
        match self.get(k)? {
            Value::Number(n) => n.as_u64().map(|x| x as u32),
            Value::Array(a) => a.first().and_then(|x| x.as_u64()).map(|x| x as u32),
            _ => None,
        }
    }
}

fn activation(name: &str) -> Result<Activation> {
    Ok(match name {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "gelu" => Activation::Gelu,
        "silu" | "swish" => Activation::Silu,
        "relu" => Activation::Relu,
        other => {
            return Err(GimError::Unsupported(format!(
                "activation `{other}` is not supported (supported: gelu_new, gelu_pytorch_tanh, gelu, silu, relu)"
            )))
        }
    })
}

fn gpt2(c: &Cfg) -> Result<ModelConfig> {
    let d = c.need("n_embd")?;
    let h = c.need("n_head")?;
    let n_layers = c.need("n_layer")?;
    if c.bool("scale_attn_by_inverse_layer_idx") == Some(true) {
        return Err(GimError::Unsupported(
            "gpt2 config field `scale_attn_by_inverse_layer_idx: true` is not supported".into(),
        ));
    }
    if c.bool("add_cross_attention") == Some(true) {
        return Err(GimError::Unsupported(
            "gpt2 config field `add_cross_attention: true` (encoder-decoder) is not supported"
                .into(),
        ));
    }
    let scale = if c.bool("scale_attn_weights").unwrap_or(true) {
        1.0 / ((d / h) as f64).sqrt()
    } else {
        1.0
    };
    if d % h != 0 {
        return Err(GimError::Config(format!(
            "n_embd {d} is not divisible by n_head {h}"
        )));
    }
    Ok(ModelConfig {
        model_type: "gpt2".into(),
        weights: WeightLayout::Gpt2,
        vocab_size: c.need("vocab_size")?,
        d_model: d,
        n_layers,
        n_heads: h,
        n_kv_heads: h,
        d_head: d / h,
        d_mlp: c.usize("n_inner").unwrap_or(4 * d),
        n_ctx: c.usize("n_positions").unwrap_or(1024),
        norm: NormKind::LayerNorm,
        norm_eps: c.f64("layer_norm_epsilon").unwrap_or(1e-5),
        norm_one_plus: false,
        positional: Positional::Learned,
        qkv_bias: true,
        o_bias: true,
        mlp_bias: true,
        gated_mlp: false,
        act: activation(
            &c.str("activation_function")
                .unwrap_or_else(|| "gelu_new".into()),
        )?,
        qk_norm: false,
        post_norms: false,
        embed_scale: None,
        attn_scale: scale,
        attn_softcap: None,
        final_softcap: None,
        sliding_window: vec![None; n_layers],
        tie_embeddings: c.bool("tie_word_embeddings").unwrap_or(true),
        bos_token_id: c.token("bos_token_id"),
        eos_token_id: c.token("eos_token_id"),
        pad_token_id: c.token("pad_token_id"),
    })
}

/// Rope parameters from either the newer `rope_parameters` or the older
/// `rope_theta` + `rope_scaling` keys.
fn rope(c: &Cfg, d_head: usize, model_type: &str) -> Result<Positional> {
    let params = c.get("rope_parameters");
    let scaling = c.get("rope_scaling");
    let p = |k: &str| -> Option<&Value> {
        params
            .and_then(|v| v.get(k))
            .filter(|v| !v.is_null())
            .or_else(|| scaling.and_then(|v| v.get(k)).filter(|v| !v.is_null()))
    };
    let theta = params
        .and_then(|v| v.get("rope_theta"))
        .and_then(|v| v.as_f64())
        .or_else(|| c.f64("rope_theta"))
        .unwrap_or(10000.0);
    let rope_type = p("rope_type")
        .or_else(|| p("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default")
        .to_string();
    let partial = p("partial_rotary_factor")
        .and_then(|v| v.as_f64())
        .or_else(|| c.f64("partial_rotary_factor"))
        .unwrap_or(1.0);
    let rotary_dim = ((d_head as f64) * partial) as usize;
    if !rotary_dim.is_multiple_of(2) || rotary_dim == 0 {
        return Err(GimError::Config(format!(
            "rotary dimension {rotary_dim} (head_dim {d_head} × partial_rotary_factor {partial}) must be even and positive"
        )));
    }
    // HF: inv_freq = 1 / base^(arange(0, dim, 2) / dim), built in float32.
    let mut inv_freq: Vec<f64> = (0..rotary_dim / 2)
        .map(|i| {
            let e = ((2 * i) as f32) / (rotary_dim as f32);
            (1.0f32 / (theta as f32).powf(e)) as f64
        })
        .collect();
    match rope_type.as_str() {
        "default" => {}
        "llama3" => {
            let get = |k: &str| -> Result<f64> {
                p(k).and_then(|v| v.as_f64()).ok_or_else(|| {
                    GimError::Config(format!("rope scaling `llama3` needs the field `{k}`"))
                })
            };
            let factor = get("factor")?;
            let low = get("low_freq_factor")?;
            let high = get("high_freq_factor")?;
            let old_ctx = get("original_max_position_embeddings")?;
            let low_wavelen = old_ctx / low;
            let high_wavelen = old_ctx / high;
            for f in inv_freq.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                let scaled = if wavelen > low_wavelen { *f / factor } else { *f };
                let smooth = (old_ctx / wavelen - low) / (high - low);
                let smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled;
                let is_medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                *f = if is_medium { smoothed } else { scaled };
                *f = (*f as f32) as f64;
            }
        }
        other => {
            return Err(GimError::Unsupported(format!(
                "{model_type}: rope scaling type `{other}` is not supported (supported: default, llama3)"
            )))
        }
    }
    Ok(Positional::Rotary {
        rotary_dim,
        inv_freq,
    })
}

fn decoder(c: &Cfg, model_type: &str) -> Result<ModelConfig> {
    let d = c.need("hidden_size")?;
    let h = c.need("num_attention_heads")?;
    let n_layers = c.need("num_hidden_layers")?;
    let kv = c.usize("num_key_value_heads").unwrap_or(h);
    if kv == 0 || h % kv != 0 {
        return Err(GimError::Config(format!(
            "num_attention_heads {h} is not a multiple of num_key_value_heads {kv}"
        )));
    }
    let d_head = c.usize("head_dim").unwrap_or(d / h);
    let is_gemma = model_type.starts_with("gemma");
    let act_name = c
        .str("hidden_activation")
        .or_else(|| c.str("hidden_act"))
        .unwrap_or_else(|| {
            if is_gemma {
                "gelu_pytorch_tanh".into()
            } else {
                "silu".into()
            }
        });
    // Gemma v1 checkpoints say `gelu` but transformers runs the tanh approximation.
    let act = if model_type == "gemma" && act_name == "gelu" {
        Activation::GeluTanh
    } else {
        activation(&act_name)?
    };
    if c.bool("mlp_bias") == Some(true) && model_type != "llama" {
        return Err(GimError::Unsupported(format!(
            "{model_type}: `mlp_bias: true` is not supported"
        )));
    }
    if c.usize("pretraining_tp").unwrap_or(1) != 1 {
        // Only changes summation order in transformers; harmless, but say nothing.
    }
    if c.bool("use_bidirectional_attention") == Some(true) {
        return Err(GimError::Unsupported(format!(
            "{model_type}: `use_bidirectional_attention: true` is not supported (causal models only)"
        )));
    }
    let window = c.usize("sliding_window");
    let layer_types: Option<Vec<String>> = c.get("layer_types").and_then(|v| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
    });
    let sliding_window: Vec<Option<usize>> = match (&layer_types, model_type) {
        (Some(types), _) => {
            if types.len() != n_layers {
                return Err(GimError::Config(format!(
                    "layer_types has {} entries for {n_layers} layers",
                    types.len()
                )));
            }
            let mut out = Vec::with_capacity(n_layers);
            for t in types {
                out.push(match t.as_str() {
                    "full_attention" => None,
                    "sliding_attention" => Some(window.ok_or_else(|| {
                        GimError::Config("a sliding_attention layer needs `sliding_window`".into())
                    })?),
                    other => {
                        return Err(GimError::Unsupported(format!(
                            "{model_type}: layer type `{other}` is not supported"
                        )))
                    }
                });
            }
            out
        }
        (None, "gemma2") => (0..n_layers)
            .map(|i| {
                if i % 2 == 0 {
                    window.or(Some(4096))
                } else {
                    None
                }
            })
            .collect(),
        (None, "qwen2") | (None, "qwen3") => {
            let use_sw = c.bool("use_sliding_window").unwrap_or(false);
            let max_window_layers = c.usize("max_window_layers").unwrap_or(n_layers);
            (0..n_layers)
                .map(|i| {
                    if use_sw && i >= max_window_layers {
                        window
                    } else {
                        None
                    }
                })
                .collect()
        }
        (None, "mistral") | (None, "phi3") => vec![window; n_layers],
        (None, _) => vec![None; n_layers],
    };
    let attn_scale = match (model_type, c.f64("query_pre_attn_scalar")) {
        ("gemma2", Some(s)) => 1.0 / s.sqrt(),
        _ => 1.0 / (d_head as f64).sqrt(),
    };
    let (attn_softcap, final_softcap) = if model_type == "gemma2" {
        (
            c.f64("attn_logit_softcapping"),
            c.f64("final_logit_softcapping"),
        )
    } else {
        (None, None)
    };
    let qkv_bias = match model_type {
        "qwen2" => true,
        _ => c.bool("attention_bias").unwrap_or(false),
    };
    Ok(ModelConfig {
        model_type: model_type.into(),
        weights: if model_type == "phi3" {
            WeightLayout::Fused
        } else {
            WeightLayout::Separate
        },
        vocab_size: c.need("vocab_size")?,
        d_model: d,
        n_layers,
        n_heads: h,
        n_kv_heads: kv,
        d_head,
        d_mlp: c.need("intermediate_size")?,
        n_ctx: c.usize("max_position_embeddings").unwrap_or(4096),
        norm: NormKind::RmsNorm,
        norm_eps: c.f64("rms_norm_eps").unwrap_or(1e-6),
        norm_one_plus: is_gemma,
        positional: rope(c, d_head, model_type)?,
        qkv_bias,
        o_bias: model_type != "qwen2" && qkv_bias,
        mlp_bias: c.bool("mlp_bias").unwrap_or(false),
        gated_mlp: true,
        act,
        qk_norm: model_type == "qwen3",
        post_norms: model_type == "gemma2",
        embed_scale: if is_gemma {
            Some((d as f64).sqrt())
        } else {
            None
        },
        attn_scale,
        attn_softcap,
        final_softcap,
        sliding_window,
        tie_embeddings: c.bool("tie_word_embeddings").unwrap_or(is_gemma),
        bos_token_id: c.token("bos_token_id"),
        eos_token_id: c.token("eos_token_id"),
        pad_token_id: c.token("pad_token_id"),
    })
}
