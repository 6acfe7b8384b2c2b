//! The tokenizer a GGUF file describes in its metadata, built the way transformers builds it
//! (`integrations/gguf/gguf_tokenizer_mapping.py`), so that the ids are the same.
//!
//! Only byte-level BPE (`tokenizer.ggml.model = "gpt2"`) is rebuilt; a SentencePiece file
//! (`"llama"`) can bring its `tokenizer.json` next to it. candle's `TokenizerFromGguf` is not used:
//! it is built on another version of the `tokenizers` crate, and for pre-tokenizers it does not
//! know it adds a prefix space (SmolLM2's `smollm` would become `ĠThe` where transformers has `The`).

use std::collections::HashSet;

use candle_core::quantized::gguf_file::Value;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::GgufFile;
use crate::error::{GimError, Result};
use crate::tokenizer::Tok;

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex transformers uses for a `tokenizer.ggml.pre` value; any other value (`gpt2`,
/// `smollm`, …) gets GPT-2's byte-level regex.
fn split_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// GPT-2's byte → printable character table.
fn bytes_to_unicode() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut table = vec!['\0'; 256];
    let mut extra = 0u32;
    for b in 0..256u32 {
        let c = if printable.contains(&b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        table[b as usize] = char::from_u32(c).unwrap_or('?');
    }
    table
}

fn strings(g: &GgufFile, key: &str) -> Result<Option<Vec<String>>> {
    match g.meta(key) {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(g.bad_meta(key, other, "an array of strings")),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(other) => Err(g.bad_meta(key, other, "an array of strings")),
    }
}

/// The tokenizer in `g`'s metadata, or `tokenizer.json` beside the file when the metadata's
/// tokenizer is SentencePiece.
pub fn from_gguf(g: &GgufFile) -> Result<Tok> {
    let shown = g.path.display();
    let model = g.meta_str("tokenizer.ggml.model")?.unwrap_or_default();
    if model != "gpt2" {
        let sidecar = g.path.with_file_name("tokenizer.json");
        if sidecar.is_file() {
            return Tok::from_dir(g.path.parent().unwrap_or(std::path::Path::new(".")));
        }
        let what = match model.as_str() {
            "" => "has no tokenizer (`tokenizer.ggml.model`)".to_string(),
            "llama" => "has a SentencePiece tokenizer (`tokenizer.ggml.model = llama`), which gim does not rebuild".to_string(),
            other => format!("has tokenizer model `{other}`, which gim does not rebuild"),
        };
        return Err(GimError::Unsupported(format!(
            "{shown} {what}; only byte-level BPE (`gpt2`) is supported — put the model's tokenizer.json next to the file to use it"
        )));
    }
    let tokens = strings(g, "tokenizer.ggml.tokens")?
        .ok_or_else(|| g.err("has no `tokenizer.ggml.tokens`"))?;
    let merges = strings(g, "tokenizer.ggml.merges")?.ok_or_else(|| {
        g.err("has a BPE tokenizer without `tokenizer.ggml.merges`, which gim cannot rebuild")
    })?;
    let spelling = bytes_to_unicode();
    let alphabet: HashSet<char> = spelling.iter().copied().collect();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    // A token written in plain text instead of the byte alphabet is respelled, as transformers does.
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let spelled = if in_alphabet(t) {
                t.clone()
            } else {
                t.bytes().map(|b| spelling[b as usize]).collect()
            };
            (spelled, i as u32)
        })
        .collect();
    let mut pairs = Vec::with_capacity(merges.len());
    for m in &merges {
        let mut it = m.split(' ');
        match (it.next(), it.next(), it.next()) {
            (Some(a), Some(b), None) => pairs.push((a.to_string(), b.to_string())),
            _ => return Err(g.err(&format!("has a bad merge `{m}` in `tokenizer.ggml.merges`"))),
        }
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, pairs)
        .build()
        .map_err(|e| g.err(&format!("has a BPE tokenizer tokenizers rejects: {e}")))?;
    let mut tk = Tokenizer::new(bpe);
    let pre = g.meta_str("tokenizer.ggml.pre")?.unwrap_or_default();
    match split_regex(&pre) {
        Some(re) => {
            let split = Split::new(
                SplitPattern::Regex(re.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| GimError::Tokenizer(e.to_string()))?;
            tk.with_pre_tokenizer(Some(Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])));
        }
        None => {
            tk.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        }
    }
    tk.with_decoder(Some(ByteLevel::default()));

    // Control tokens (type 3) are special; user-defined ones (type 4) are matched whole but are
    // not special. A control token outside the byte alphabet is a llama.cpp mislabel: skipped.
    let types: Vec<i128> = match g.meta("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) => a.iter().map(|v| super::int_of(v).unwrap_or(1)).collect(),
        _ => Vec::new(),
    };
    let mut special: Vec<AddedToken> = Vec::new();
    let mut user: Vec<AddedToken> = Vec::new();
    for (t, ty) in tokens.iter().zip(&types) {
        match ty {
            3 if in_alphabet(t) => special.push(AddedToken::from(t.clone(), true)),
            4 if in_alphabet(t) => user.push(AddedToken::from(t.clone(), false).normalized(false)),
            _ => {}
        }
    }
    // The named special tokens (what transformers' tokenizer config lists) are special too.
    let named = |key: &str| -> Result<Option<String>> {
        Ok(g.meta_usize(key)?.and_then(|i| tokens.get(i).cloned()))
    };
    let bos = named("tokenizer.ggml.bos_token_id")?;
    let eos = named("tokenizer.ggml.eos_token_id")?;
    for key in [
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
    ] {
        if let Some(t) = named(key)? {
            special.push(AddedToken::from(t, true));
        }
    }
    for t in bos.iter().chain(eos.iter()) {
        special.push(AddedToken::from(t.clone(), true));
    }
    // transformers' GPT2Tokenizer, which it builds these from, adds its default special token.
    if tokens.iter().any(|t| t == "<|endoftext|>") {
        special.push(AddedToken::from("<|endoftext|>", true));
    }
    tk.add_special_tokens(&special);
    tk.add_tokens(&user);

    let add_bos = g.meta_bool("tokenizer.ggml.add_bos_token").unwrap_or(false);
    let add_eos = g.meta_bool("tokenizer.ggml.add_eos_token").unwrap_or(false);
    let bos = bos.filter(|_| add_bos);
    let eos = eos.filter(|_| add_eos);
    if bos.is_some() || eos.is_some() {
        let id = |t: &String| tk.token_to_id(t).unwrap_or(0);
        let mut single: Vec<String> = Vec::new();
        let mut pair: Vec<String> = Vec::new();
        let mut specials: Vec<(String, u32)> = Vec::new();
        if let Some(b) = &bos {
            single.push(format!("{b}:0"));
            specials.push((b.clone(), id(b)));
        }
        single.push("$A:0".into());
        if let Some(e) = &eos {
            single.push(format!("{e}:0"));
            specials.push((e.clone(), id(e)));
        }
        pair.extend(single.iter().cloned());
        if let Some(b) = &bos {
            pair.push(format!("{b}:1"));
        }
        pair.push("$B:1".into());
        if let Some(e) = &eos {
            pair.push(format!("{e}:1"));
        }
        let tp = TemplateProcessing::builder()
            .try_single(single)
            .and_then(|b| b.try_pair(pair))
            .map_err(|e| {
                g.err(&format!(
                    "has BOS/EOS tokens tokenizers cannot template: {e}"
                ))
            })?
            .special_tokens(specials)
            .build()
            .map_err(|e| {
                g.err(&format!(
                    "has BOS/EOS tokens tokenizers cannot template: {e}"
                ))
            })?;
        tk.with_post_processor(Some(tp));
    }
    Ok(Tok::from_tokenizer(tk))
}
