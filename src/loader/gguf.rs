//! GGUF checkpoints (llama.cpp's single-file format): the metadata becomes a Hugging Face style
//! config, the tensors are dequantised one at a time under the Hugging Face names the weight maps
//! ask for, and the tokenizer is rebuilt from the metadata.
//!
//! Family knowledge stays where it is: `config.rs` reads the config we build here and
//! `weights.rs` asks for the tensors it always asks for. What is GGUF-specific lives in this file:
//! llama.cpp's names, its row permutation of llama's q/k projections, Gemma's `1 + w` norms.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use serde_json::{json, Map, Value as Json};

use super::LoadOpts;
use crate::error::{GimError, Result};
use crate::model::config::Positional;
use crate::model::weights::{load_weights, TensorSource};
use crate::model::{ModelConfig, Transformer};
use crate::tokenizer::Tok;

mod tokenizer;

/// GGUF architectures (`general.architecture`) we load; each is the `model_type` of the same name.
pub const SUPPORTED_ARCHS: &[&str] = &[
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gpt2",
];

/// Tensor types we dequantise (candle's CPU dequantisers).
const SUPPORTED_TYPES: &[GgmlDType] = &[
    GgmlDType::F32,
    GgmlDType::F16,
    GgmlDType::BF16,
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q2K,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];

/// Load a GGUF file: the config from its metadata, its tokenizer, and its weights dequantised
/// to `opts.dtype` on `opts.device` one tensor at a time.
pub fn load(path: &Path, opts: &LoadOpts) -> Result<(Transformer, Tok)> {
    let g = GgufFile::open(path)?;
    let cfg = g.config()?;
    let tok = g.tokenizer()?;
    if tok.vocab_size() > cfg.vocab_size {
        return Err(g.err(&format!(
            "is inconsistent: its tokenizer has {} tokens for a vocabulary of {}",
            tok.vocab_size(),
            cfg.vocab_size
        )));
    }
    let w = load_weights(&cfg, &g.source(&cfg), opts.dtype, &opts.device)?;
    Ok((
        Transformer::new(cfg, w, opts.device.clone(), opts.dtype),
        tok,
    ))
}

/// An open GGUF file: its parsed header and a reader for tensor data.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: RefCell<BufReader<File>>,
    arch: String,
}

impl GgufFile {
    /// Read and check the header: magic, metadata, tensor table, and that every tensor lies
    /// inside the file with a type we can dequantise.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display();
        let file =
            File::open(path).map_err(|e| GimError::Load(format!("cannot open {shown}: {e}")))?;
        let file_size = file
            .metadata()
            .map_err(|e| GimError::Load(format!("cannot read {shown}: {e}")))?
            .len();
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut head = Vec::with_capacity(8);
        (&mut reader)
            .take(8)
            .read_to_end(&mut head)
            .map_err(|e| GimError::Load(format!("cannot read {shown}: {e}")))?;
        if head.is_empty() {
            return Err(GimError::Load(format!(
                "{shown} is empty (truncated); download it again"
            )));
        }
        let magic = &head[..head.len().min(4)];
        if !b"GGUF".starts_with(magic) {
            let hex: Vec<String> = magic.iter().map(|b| format!("{b:02x}")).collect();
            return Err(GimError::Load(format!(
                "{shown} is not a GGUF file (it starts with bytes {} instead of `GGUF`); pass a .gguf file or a model folder",
                hex.join(" ")
            )));
        }
        if head.len() < 8 {
            return Err(GimError::Load(format!(
                "{shown} is truncated: {} bytes, less than a GGUF header; download it again",
                head.len()
            )));
        }
        let version = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if !(1..=3).contains(&version) {
            return Err(GimError::Unsupported(format!(
                "{shown} is GGUF version {version}, which gim cannot read (versions 1 to 3)"
            )));
        }
        std::io::Seek::rewind(&mut reader)
            .map_err(|e| GimError::Load(format!("cannot read {shown}: {e}")))?;
        let content = Content::read(&mut reader).map_err(|e| header_error(path, &e))?;
        let g = GgufFile {
            path: path.to_path_buf(),
            content,
            reader: RefCell::new(reader),
            arch: String::new(),
        };
        g.check_tensors(file_size)?;
        let arch = g.meta_str("general.architecture")?.ok_or_else(|| {
            g.err("has no `general.architecture` in its metadata; is it a model file?")
        })?;
        if !SUPPORTED_ARCHS.contains(&arch.as_str()) {
            return Err(GimError::Unsupported(format!(
                "{shown}: GGUF architecture `{arch}` is not supported (supported: {})",
                SUPPORTED_ARCHS.join(", ")
            )));
        }
        Ok(GgufFile { arch, ..g })
    }

    /// The `general.architecture` value (`llama`, `qwen2`, …).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The file's metadata.
    pub fn metadata(&self) -> &std::collections::HashMap<String, Value> {
        &self.content.metadata
    }

    fn err(&self, what: &str) -> GimError {
        GimError::Load(format!("{} {what}", self.path.display()))
    }

    fn check_tensors(&self, file_size: u64) -> Result<()> {
        let mut infos: Vec<(&String, &TensorInfo)> = self.content.tensor_infos.iter().collect();
        infos.sort_by_key(|(_, i)| i.offset);
        for (name, info) in infos {
            let t = info.ggml_dtype;
            if !SUPPORTED_TYPES.contains(&t) {
                return Err(GimError::Unsupported(format!(
                    "{}: tensor `{name}` has quantisation type {}, which gim cannot dequantise (supported: {})",
                    self.path.display(),
                    type_name(t),
                    SUPPORTED_TYPES.iter().map(|t| type_name(*t)).collect::<Vec<_>>().join(", ")
                )));
            }
            let dims = info.shape.dims();
            let elems = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
            let last = dims.last().copied().unwrap_or(1);
            let bs = t.block_size();
            let bytes = elems
                .filter(|n| n % bs as u64 == 0 && last % bs == 0)
                .and_then(|n| (n / bs as u64).checked_mul(t.type_size() as u64));
            let Some(bytes) = bytes else {
                return Err(self.err(&format!(
                    "is corrupt: tensor `{name}` has shape {dims:?}, which does not fit {} blocks of {bs}",
                    type_name(t)
                )));
            };
            let start = self.content.tensor_data_offset.checked_add(info.offset);
            let end = start.and_then(|s| s.checked_add(bytes));
            match end {
                Some(end) if end <= file_size => {}
                _ => {
                    return Err(self.err(&format!(
                        "is truncated or corrupt: tensor `{name}` ({} bytes at offset {}) ends beyond the end of the file ({file_size} bytes); download it again",
                        bytes,
                        start.unwrap_or(u64::MAX)
                    )))
                }
            }
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn meta_str(&self, key: &str) -> Result<Option<String>> {
        match self.meta(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.bad_meta(key, v, "a string")),
        }
    }

    fn meta_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.meta(key) {
            None => Ok(None),
            Some(v) => match int_of(v) {
                Some(x) if x >= 0 => Ok(Some(x as usize)),
                _ => Err(self.bad_meta(key, v, "a non-negative integer")),
            },
        }
    }

    fn need_usize(&self, key: &str) -> Result<usize> {
        self.meta_usize(key)?
            .ok_or_else(|| self.err(&format!("lacks the metadata field `{key}`")))
    }

    fn meta_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.meta(key) {
            None => Ok(None),
            // An f32 field holds a decimal like 1e-5 as 9.99999974e-6: take the shortest decimal
            // that rounds to the same f32, the value the model's config.json had.
            Some(Value::F32(x)) => Ok(format!("{x}").parse().ok()),
            Some(Value::F64(x)) => Ok(Some(*x)),
            Some(v) => match int_of(v) {
                Some(x) => Ok(Some(x as f64)),
                None => Err(self.bad_meta(key, v, "a number")),
            },
        }
    }

    fn meta_bool(&self, key: &str) -> Option<bool> {
        match self.meta(key) {
            Some(Value::Bool(b)) => Some(*b),
            Some(v) => int_of(v).map(|x| x != 0),
            None => None,
        }
    }

    fn bad_meta(&self, key: &str, v: &Value, want: &str) -> GimError {
        let shown = match v {
            Value::Array(a) => format!("an array of {}", a.len()),
            Value::String(s) => format!("the string {s:?}"),
            other => format!("{other:?}"),
        };
        self.err(&format!(
            "has a bad metadata field `{key}`: {shown}, expected {want}"
        ))
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Dimensions of a tensor in candle's order (`[rows, cols]` for a linear weight).
    fn dims(&self, name: &str) -> Option<&[usize]> {
        self.content.tensor_infos.get(name).map(|i| i.shape.dims())
    }

    /// One tensor, dequantised to f32 on the CPU; the quantised copy is dropped before returning.
    fn read(&self, name: &str) -> Result<Tensor> {
        let q = {
            let mut r = self.reader.borrow_mut();
            self.content
                .tensor(&mut *r, name, &Device::Cpu)
                .map_err(|e| {
                    self.err(&format!(
                        "is corrupt: cannot read tensor `{name}` ({}); download it again",
                        first_line(&e.to_string())
                    ))
                })?
        };
        Ok(q.dequantize(&Device::Cpu)?)
    }

    /// The model config, built as a Hugging Face `config.json` and translated by
    /// [`ModelConfig::from_hf`].
    pub fn config(&self) -> Result<ModelConfig> {
        let hf = self.hf_config()?;
        let mut cfg = ModelConfig::from_hf(&hf).map_err(|e| match e {
            GimError::Unsupported(m) => {
                GimError::Unsupported(format!("{}: {m}", self.path.display()))
            }
            GimError::Config(m) => GimError::Config(format!("{}: {m}", self.path.display())),
            other => other,
        })?;
        self.apply_rope_freqs(&mut cfg)?;
        Ok(cfg)
    }

    /// The metadata as a Hugging Face config (what transformers' GGUF loader builds too).
    pub fn hf_config(&self) -> Result<Json> {
        let a = self.arch.as_str();
        let k = |s: &str| format!("{a}.{s}");
        let mut c = Map::new();
        c.insert("model_type".into(), json!(a));
        let layers = self.need_usize(&k("block_count"))?;
        let d = self.need_usize(&k("embedding_length"))?;
        let heads = self.need_usize(&k("attention.head_count"))?;
        if heads == 0 || d == 0 || layers == 0 {
            return Err(self.err("has zero layers, heads or width in its metadata"));
        }
        // Sizes that get allocated before any tensor is checked against them.
        if layers > self.content.tensor_infos.len() || d > 1 << 20 || heads > d {
            return Err(self.err(&format!(
                "is inconsistent: {layers} layers, width {d} and {heads} heads do not fit its {} tensors",
                self.content.tensor_infos.len()
            )));
        }
        let vocab = match self.meta_usize(&k("vocab_size"))? {
            Some(v) => v,
            None => match self.meta("tokenizer.ggml.tokens") {
                Some(Value::Array(t)) => t.len(),
                _ => self
                    .dims("token_embd.weight")
                    .and_then(|d| d.first().copied())
                    .ok_or_else(|| self.err("has no vocabulary size and no `token_embd.weight`"))?,
            },
        };
        let ctx = self.meta_usize(&k("context_length"))?;
        let ffn = self.meta_usize(&k("feed_forward_length"))?;
        for id in ["bos", "eos", "padding"] {
            if let Some(v) = self.meta_usize(&format!("tokenizer.ggml.{id}_token_id"))? {
                let key = if id == "padding" { "pad" } else { id };
                c.insert(format!("{key}_token_id"), json!(v));
            }
        }
        c.insert("vocab_size".into(), json!(vocab));
        c.insert(
            "tie_word_embeddings".into(),
            json!(!self.has_tensor("output.weight")),
        );
        if a == "gpt2" {
            c.insert("n_layer".into(), json!(layers));
            c.insert("n_embd".into(), json!(d));
            c.insert("n_head".into(), json!(heads));
            if let Some(f) = ffn {
                c.insert("n_inner".into(), json!(f));
            }
            if let Some(n) = ctx {
                c.insert("n_positions".into(), json!(n));
            }
            if let Some(e) = self.meta_f64(&k("attention.layer_norm_epsilon"))? {
                c.insert("layer_norm_epsilon".into(), json!(e));
            }
            return Ok(Json::Object(c));
        }
        c.insert("num_hidden_layers".into(), json!(layers));
        c.insert("hidden_size".into(), json!(d));
        c.insert("num_attention_heads".into(), json!(heads));
        let kv = self
            .meta_usize(&k("attention.head_count_kv"))?
            .unwrap_or(heads);
        c.insert("num_key_value_heads".into(), json!(kv));
        let ffn = ffn.ok_or_else(|| {
            self.err(&format!(
                "lacks the metadata field `{}`",
                k("feed_forward_length")
            ))
        })?;
        c.insert("intermediate_size".into(), json!(ffn));
        if let Some(n) = ctx {
            c.insert("max_position_embeddings".into(), json!(n));
        }
        let head_dim = self
            .meta_usize(&k("attention.key_length"))?
            .unwrap_or(d / heads);
        if head_dim == 0 || head_dim > 1 << 16 || kv == 0 || kv > heads {
            return Err(self.err(&format!(
                "is inconsistent: heads of width {head_dim}, {heads} query and {kv} key/value heads"
            )));
        }
        if let Some(v) = self.meta_usize(&k("attention.value_length"))? {
            if v != head_dim {
                return Err(GimError::Unsupported(format!(
                    "{}: value heads of width {v} differ from key heads of width {head_dim}; not supported",
                    self.path.display()
                )));
            }
        }
        c.insert("head_dim".into(), json!(head_dim));
        if let Some(e) = self.meta_f64(&k("attention.layer_norm_rms_epsilon"))? {
            c.insert("rms_norm_eps".into(), json!(e));
        }
        let mut rope = Map::new();
        rope.insert(
            "rope_theta".into(),
            json!(self.meta_f64(&k("rope.freq_base"))?.unwrap_or(10000.0)),
        );
        rope.insert("rope_type".into(), json!("default"));
        if let Some(n) = self.meta_usize(&k("rope.dimension_count"))? {
            if n > head_dim {
                return Err(self.err(&format!(
                    "is inconsistent: rope over {n} dimensions of heads {head_dim} wide"
                )));
            }
            if n != head_dim {
                rope.insert(
                    "partial_rotary_factor".into(),
                    json!(n as f64 / head_dim as f64),
                );
            }
        }
        // Rope scaling other than llama3's (which llama.cpp stores as `rope_freqs.weight`, see
        // `apply_rope_freqs`) is passed on by type, so config.rs names what it does not support.
        if let Some(t) = self
            .meta_str(&k("rope.scaling.type"))?
            .filter(|t| t != "none")
        {
            rope.insert("rope_type".into(), json!(t));
            if let Some(f) = self.meta_f64(&k("rope.scaling.factor"))? {
                rope.insert("factor".into(), json!(f));
            }
        }
        if self.has_tensor("rope_factors_long.weight") {
            rope.insert("rope_type".into(), json!("longrope"));
        }
        c.insert("rope_parameters".into(), Json::Object(rope));
        // llama.cpp writes 0 for a model without a window.
        if let Some(w) = self
            .meta_usize(&k("attention.sliding_window"))?
            .filter(|w| *w > 0)
        {
            c.insert("sliding_window".into(), json!(w));
        }
        if a == "llama" {
            c.insert(
                "attention_bias".into(),
                json!(self.has_tensor("blk.0.attn_q.bias")),
            );
            c.insert(
                "mlp_bias".into(),
                json!(self.has_tensor("blk.0.ffn_up.bias")),
            );
        }
        if a == "gemma2" {
            // llama.cpp's and transformers' defaults when the file does not say.
            let attn = self.meta_f64(&k("attn_logit_softcapping"))?.unwrap_or(50.0);
            let last = self
                .meta_f64(&k("final_logit_softcapping"))?
                .unwrap_or(30.0);
            c.insert("attn_logit_softcapping".into(), json!(attn));
            c.insert("final_logit_softcapping".into(), json!(last));
            // GGUF has no query_pre_attn_scalar: llama.cpp scales by 1/sqrt(head_dim), except
            // for Gemma-2 27B (46 layers), whose scalar is hidden_size / heads.
            let scalar = match self.meta_f64(&k("attention.scale"))? {
                Some(s) if s > 0.0 => 1.0 / (s * s),
                _ if layers == 46 => (d / heads) as f64,
                _ => head_dim as f64,
            };
            c.insert("query_pre_attn_scalar".into(), json!(scalar));
        }
        Ok(Json::Object(c))
    }

    /// Llama 3.1+ rope scaling: llama.cpp stores the per-frequency divisors it computed from
    /// the `llama3` rope parameters as the tensor `rope_freqs.weight`.
    fn apply_rope_freqs(&self, cfg: &mut ModelConfig) -> Result<()> {
        if !self.has_tensor("rope_freqs.weight") {
            return Ok(());
        }
        let factors: Vec<f32> = self.read("rope_freqs.weight")?.flatten_all()?.to_vec1()?;
        let Positional::Rotary { inv_freq, .. } = &mut cfg.positional else {
            return Ok(());
        };
        if factors.len() != inv_freq.len() || factors.iter().any(|f| !f.is_finite() || *f <= 0.0) {
            return Err(self.err(&format!(
                "is inconsistent: `rope_freqs.weight` has {} factors for {} rotary frequencies",
                factors.len(),
                inv_freq.len()
            )));
        }
        for (f, s) in inv_freq.iter_mut().zip(factors) {
            *f = ((*f as f32) / s) as f64;
        }
        Ok(())
    }

    /// The tokenizer described by the metadata.
    pub fn tokenizer(&self) -> Result<Tok> {
        tokenizer::from_gguf(self)
    }

    /// The tensors under Hugging Face names, for [`crate::model::weights::load_weights`].
    pub fn source(&self, cfg: &ModelConfig) -> GgufSource<'_> {
        GgufSource {
            file: self,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
        }
    }
}

/// What must be done to a GGUF tensor to get the Hugging Face one.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fix {
    None,
    /// Undo llama.cpp's row permutation of llama's q/k projections (over this many heads).
    Unpermute(usize),
    /// GPT-2's Conv1D weights are `[in, out]` in transformers, `[out, in]` in GGUF.
    Transpose,
    /// Gemma's RMSNorm weights are stored as `1 + w`.
    MinusOne,
}

/// Serves the Hugging Face tensor names of a GGUF file.
pub struct GgufSource<'a> {
    file: &'a GgufFile,
    n_heads: usize,
    n_kv_heads: usize,
}

impl GgufSource<'_> {
    /// The GGUF name of a Hugging Face tensor and how to convert it.
    fn map(&self, hf: &str) -> Option<(String, Fix)> {
        let arch = self.file.arch();
        let (stem, kind) = hf.rsplit_once('.')?;
        if kind != "weight" && kind != "bias" {
            return None;
        }
        let gemma = arch == "gemma" || arch == "gemma2";
        let norm_fix = if gemma && kind == "weight" {
            Fix::MinusOne
        } else {
            Fix::None
        };
        let top = |name: &str, fix: Fix| Some((format!("{name}.{kind}"), fix));
        if arch == "gpt2" {
            match stem {
                "wte" => return top("token_embd", Fix::None),
                "wpe" => return top("position_embd", Fix::None),
                "ln_f" => return top("output_norm", Fix::None),
                "lm_head" => return top("output", Fix::None),
                _ => {}
            }
            let rest = stem.strip_prefix("h.")?;
            let (layer, part) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let conv = if kind == "weight" {
                Fix::Transpose
            } else {
                Fix::None
            };
            let (name, fix) = match part {
                "ln_1" => ("attn_norm", Fix::None),
                "ln_2" => ("ffn_norm", Fix::None),
                "attn.c_attn" => ("attn_qkv", conv),
                "attn.c_proj" => ("attn_output", conv),
                "mlp.c_fc" => ("ffn_up", conv),
                "mlp.c_proj" => ("ffn_down", conv),
                _ => return None,
            };
            return Some((format!("blk.{layer}.{name}.{kind}"), fix));
        }
        match stem {
            "model.embed_tokens" => return top("token_embd", Fix::None),
            "model.norm" => return top("output_norm", norm_fix),
            "lm_head" => return top("output", Fix::None),
            _ => {}
        }
        let rest = stem.strip_prefix("model.layers.")?;
        let (layer, part) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        // llama.cpp permutes q/k rows for the architectures it runs with interleaved rope.
        // (transformers undoes it for `llama` files only, so a `mistral` one is not permuted.)
        let permuted = arch == "llama";
        let (name, fix) = match part {
            "input_layernorm" => ("attn_norm", norm_fix),
            "post_attention_layernorm" if arch == "gemma2" => ("post_attention_norm", norm_fix),
            "post_attention_layernorm" => ("ffn_norm", norm_fix),
            "pre_feedforward_layernorm" => ("ffn_norm", norm_fix),
            "post_feedforward_layernorm" => ("post_ffw_norm", norm_fix),
            "self_attn.q_proj" if permuted => ("attn_q", Fix::Unpermute(self.n_heads)),
            "self_attn.k_proj" if permuted => ("attn_k", Fix::Unpermute(self.n_kv_heads)),
            "self_attn.q_proj" => ("attn_q", Fix::None),
            "self_attn.k_proj" => ("attn_k", Fix::None),
            "self_attn.v_proj" => ("attn_v", Fix::None),
            "self_attn.o_proj" => ("attn_output", Fix::None),
            "self_attn.qkv_proj" => ("attn_qkv", Fix::None),
            "self_attn.q_norm" => ("attn_q_norm", norm_fix),
            "self_attn.k_norm" => ("attn_k_norm", norm_fix),
            "mlp.gate_proj" => ("ffn_gate", Fix::None),
            "mlp.up_proj" => ("ffn_up", Fix::None),
            "mlp.gate_up_proj" => ("ffn_up", Fix::None),
            "mlp.down_proj" => ("ffn_down", Fix::None),
            _ => return None,
        };
        Some((format!("blk.{layer}.{name}.{kind}"), fix))
    }
}

impl TensorSource for GgufSource<'_> {
    fn get(&self, hf: &str) -> Result<Tensor> {
        let Some((name, fix)) = self.map(hf).filter(|(n, _)| self.file.has_tensor(n)) else {
            let gguf = self.map(hf).map(|(n, _)| n).unwrap_or_else(|| "?".into());
            return Err(self.file.err(&format!(
                "has no tensor `{gguf}` (for `{hf}`); it does not match its `{}` architecture",
                self.file.arch()
            )));
        };
        let t = self.file.read(&name)?;
        let bad_shape = || {
            self.file.err(&format!(
                "is inconsistent: tensor `{name}` has shape {:?}, which does not fit {} heads",
                t.dims(),
                match fix {
                    Fix::Unpermute(n) => n,
                    _ => 0,
                }
            ))
        };
        Ok(match fix {
            Fix::None => t,
            Fix::MinusOne => (t - 1.0)?,
            Fix::Transpose => t.t()?.contiguous()?,
            Fix::Unpermute(n) => {
                let rows = t.dims().first().copied().unwrap_or(0);
                if n == 0 || rows % (2 * n) != 0 {
                    return Err(bad_shape());
                }
                let half = rows / n / 2;
                match t.dims() {
                    [_, cols] => t
                        .reshape((n, half, 2, *cols))?
                        .transpose(1, 2)?
                        .contiguous()?
                        .reshape((rows, *cols))?,
                    [_] => t
                        .reshape((n, half, 2))?
                        .transpose(1, 2)?
                        .contiguous()?
                        .reshape(rows)?,
                    _ => return Err(bad_shape()),
                }
            }
        })
    }

    fn contains(&self, hf: &str) -> bool {
        self.map(hf)
            .map(|(n, _)| self.file.has_tensor(&n))
            .unwrap_or(false)
    }
}

fn int_of(v: &Value) -> Option<i128> {
    Some(match v {
        Value::U8(x) => *x as i128,
        Value::I8(x) => *x as i128,
        Value::U16(x) => *x as i128,
        Value::I16(x) => *x as i128,
        Value::U32(x) => *x as i128,
        Value::I32(x) => *x as i128,
        Value::U64(x) => *x as i128,
        Value::I64(x) => *x as i128,
        _ => return None,
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// llama.cpp's name of a tensor type.
fn type_name(t: GgmlDType) -> String {
    match t {
        GgmlDType::Q2K => "Q2_K".into(),
        GgmlDType::Q3K => "Q3_K".into(),
        GgmlDType::Q4K => "Q4_K".into(),
        GgmlDType::Q5K => "Q5_K".into(),
        GgmlDType::Q6K => "Q6_K".into(),
        GgmlDType::Q8K => "Q8_K".into(),
        other => format!("{other:?}"),
    }
}

/// A header candle could not parse, as one line that says what to do.
fn header_error(path: &Path, e: &candle_core::Error) -> GimError {
    let msg = first_line(&e.to_string());
    let shown = path.display();
    if let Some(n) = msg
        .strip_prefix("unknown dtype for tensor ")
        .and_then(|n| n.trim().parse::<u32>().ok())
    {
        return GimError::Unsupported(format!(
            "{shown} holds tensors of GGML type {n} ({}), which candle cannot read (supported: {})",
            ggml_type_number_name(n),
            SUPPORTED_TYPES
                .iter()
                .map(|t| type_name(*t))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    GimError::Load(format!(
        "cannot read the GGUF header of {shown} ({msg}); the file is truncated or corrupt, download it again"
    ))
}

/// ggml's names for the type numbers candle does not know.
fn ggml_type_number_name(n: u32) -> &'static str {
    match n {
        4 | 5 => "a removed Q4 variant",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "unknown",
    }
}
