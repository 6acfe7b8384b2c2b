//! Save canonical weights as an ordinary Hugging Face checkpoint (llama layout) with a
//! word-level `tokenizer.json` that both gim and `transformers` load.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use super::tasks::Vocab;
use crate::error::{GimError, Result};
use crate::model::weights::Weights;

fn io<T>(r: std::result::Result<T, impl std::fmt::Display>, what: &str) -> Result<T> {
    r.map_err(|e| GimError::Io(format!("{what}: {e}")))
}

/// Write `model.safetensors` with llama tensor names.
pub fn save_llama_weights(w: &Weights, path: &Path) -> Result<()> {
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let mut put = |k: String, v: &Tensor| -> Result<()> {
        t.insert(k, v.detach().contiguous()?);
        Ok(())
    };
    put("model.embed_tokens.weight".into(), &w.embed)?;
    put("lm_head.weight".into(), &w.unembed)?;
    put("model.norm.weight".into(), &w.ln_final.w)?;
    for (l, b) in w.blocks.iter().enumerate() {
        let p = format!("model.layers.{l}");
        put(format!("{p}.input_layernorm.weight"), &b.ln1.w)?;
        put(format!("{p}.post_attention_layernorm.weight"), &b.ln2.w)?;
        let a = &b.attn;
        put(format!("{p}.self_attn.q_proj.weight"), &a.q.w.tensor()?)?;
        put(format!("{p}.self_attn.k_proj.weight"), &a.k.w.tensor()?)?;
        put(format!("{p}.self_attn.v_proj.weight"), &a.v.w.tensor()?)?;
        put(format!("{p}.self_attn.o_proj.weight"), &a.o.w.tensor()?)?;
        if let Some(g) = &b.mlp.gate {
            put(format!("{p}.mlp.gate_proj.weight"), &g.w.tensor()?)?;
        }
        put(format!("{p}.mlp.up_proj.weight"), &b.mlp.up.w.tensor()?)?;
        put(format!("{p}.mlp.down_proj.weight"), &b.mlp.down.w.tensor()?)?;
    }
    candle_core::safetensors::save(&t, path)?;
    Ok(())
}

/// A word-level tokenizer (whitespace/punctuation pre-tokenizer, `<bos>` prepended) as
/// `tokenizer.json` plus the `tokenizer_config.json` transformers expects.
pub fn save_tokenizer(v: &Vocab, dir: &Path) -> Result<()> {
    let vocab: serde_json::Map<String, serde_json::Value> = v
        .words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), (i as u64).into()))
        .collect();
    let added: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            serde_json::json!({"id": i, "content": v.words[i], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tok = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    let cfg = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<bos>", "pad_token": "<pad>", "unk_token": "<unk>",
        "model_max_length": 64, "clean_up_tokenization_spaces": false
    });
    io(
        std::fs::write(dir.join("tokenizer.json"), pretty(&tok)?),
        "write tokenizer.json",
    )?;
    io(
        std::fs::write(dir.join("tokenizer_config.json"), pretty(&cfg)?),
        "write tokenizer_config.json",
    )?;
    Ok(())
}

pub fn pretty(v: &serde_json::Value) -> Result<String> {
    io(serde_json::to_string_pretty(v), "json")
}
