//! GGUF checkpoints: the real SmolLM2-135M (Q4_1) predicts what transformers predicts; GGUF
//! conversions of every fixture family (written here the way llama.cpp's converter writes them)
//! match the float64 references; every quantisation type loads; a corrupt file is one error line.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use gim::attribution::{attribute, AttributeRequest, Baseline, TargetSpec};
use gim::model::weights::Weight;
use gim::model::Positions;
use serde_json::Value as Json;

// ---------------------------------------------------------------------------------------------
// A GGUF writer for the fixture checkpoints, following llama.cpp's convert_hf_to_gguf.py: its
// tensor names, its q/k row permutation for llama, Gemma's `norm + 1`, GPT-2's transposed Conv1D.
// ---------------------------------------------------------------------------------------------

/// llama.cpp's name for a Hugging Face tensor.
fn llama_cpp_name(arch: &str, hf: &str) -> Option<String> {
    let hf = hf.strip_prefix("transformer.").unwrap_or(hf);
    let (stem, kind) = hf.rsplit_once('.')?;
    let top = match stem {
        "model.embed_tokens" | "wte" => Some("token_embd"),
        "wpe" => Some("position_embd"),
        "model.norm" | "ln_f" => Some("output_norm"),
        "lm_head" => Some("output"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(format!("{t}.{kind}"));
    }
    let rest = stem
        .strip_prefix("model.layers.")
        .or_else(|| stem.strip_prefix("h."))?;
    let (layer, part) = rest.split_once('.')?;
    let name = match part {
        "input_layernorm" | "ln_1" => "attn_norm",
        "post_attention_layernorm" if arch == "gemma2" => "post_attention_norm",
        "post_attention_layernorm" | "pre_feedforward_layernorm" | "ln_2" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" | "attn.c_proj" => "attn_output",
        "self_attn.qkv_proj" | "attn.c_attn" => "attn_qkv",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" | "mlp.gate_up_proj" | "mlp.c_fc" => "ffn_up",
        "mlp.down_proj" | "mlp.c_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{name}.{kind}"))
}

/// llama.cpp's `LlamaModel.permute`: rows of each head reordered for interleaved rope.
fn permute(w: &Tensor, n_head: usize) -> Tensor {
    let rows = w.dims()[0];
    let rest: Vec<usize> = w.dims()[1..].to_vec();
    let mut shape = vec![n_head, 2, rows / n_head / 2];
    shape.extend(&rest);
    w.reshape(shape)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape(w.dims())
        .unwrap()
}

/// The values llama.cpp writes for a Hugging Face tensor.
fn convert(arch: &str, hf: &str, t: Tensor, cfg: &Json) -> Tensor {
    let n = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let gemma = arch.starts_with("gemma");
    if arch == "llama" && hf.contains("self_attn.q_proj") {
        return permute(&t, n("num_attention_heads"));
    }
    if arch == "llama" && hf.contains("self_attn.k_proj") {
        return permute(&t, n("num_key_value_heads"));
    }
    if gemma && hf.ends_with("norm.weight") {
        return (t + 1.0).unwrap();
    }
    let conv1d = !hf.contains("wte") && !hf.contains("wpe");
    if arch == "gpt2" && hf.ends_with(".weight") && t.rank() == 2 && conv1d {
        return t.t().unwrap().contiguous().unwrap();
    }
    t
}

fn u32v(x: usize) -> Value {
    Value::U32(x as u32)
}

/// The fixture tokenizer.json as llama.cpp's `tokenizer.ggml.*` metadata (byte-level BPE).
fn tokenizer_metadata(dir: &Path, cfg: &Json, md: &mut Vec<(String, Value)>) {
    let tj: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    let vocab = tj["model"]["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    let mut types = vec![1i32; tokens.len()];
    for a in tj["added_tokens"].as_array().unwrap() {
        let id = a["id"].as_u64().unwrap() as usize;
        types[id] = if a["special"].as_bool().unwrap() {
            3
        } else {
            4
        };
    }
    let merges: Vec<Value> = tj["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Json::String(s) => Value::String(s.clone()),
            Json::Array(p) => Value::String(format!(
                "{} {}",
                p[0].as_str().unwrap(),
                p[1].as_str().unwrap()
            )),
            _ => panic!("merge {m}"),
        })
        .collect();
    md.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
    md.push(("tokenizer.ggml.pre".into(), Value::String("gpt2".into())));
    md.push((
        "tokenizer.ggml.tokens".into(),
        Value::Array(tokens.into_iter().map(Value::String).collect()),
    ));
    md.push((
        "tokenizer.ggml.token_type".into(),
        Value::Array(types.into_iter().map(Value::I32).collect()),
    ));
    md.push(("tokenizer.ggml.merges".into(), Value::Array(merges)));
    for (hf, key) in [
        ("bos_token_id", "bos_token_id"),
        ("eos_token_id", "eos_token_id"),
        ("pad_token_id", "padding_token_id"),
    ] {
        if let Some(id) = cfg[hf].as_u64() {
            md.push((format!("tokenizer.ggml.{key}"), u32v(id as usize)));
        }
    }
    md.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)));
}

/// The fixture config as llama.cpp's `{arch}.*` metadata.
fn model_metadata(arch: &str, cfg: &Json, md: &mut Vec<(String, Value)>) {
    let n = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let f = |k: &str| cfg[k].as_f64().unwrap() as f32;
    let mut put = |k: &str, v: Value| md.push((format!("{arch}.{k}"), v));
    if arch == "gpt2" {
        put("block_count", u32v(n("n_layer")));
        put("embedding_length", u32v(n("n_embd")));
        put("feed_forward_length", u32v(n("n_inner")));
        put("attention.head_count", u32v(n("n_head")));
        put("context_length", u32v(n("n_positions")));
        put(
            "attention.layer_norm_epsilon",
            Value::F32(f("layer_norm_epsilon")),
        );
        return;
    }
    let head_dim = cfg["head_dim"]
        .as_u64()
        .map(|x| x as usize)
        .unwrap_or(n("hidden_size") / n("num_attention_heads"));
    put("block_count", u32v(n("num_hidden_layers")));
    put("embedding_length", u32v(n("hidden_size")));
    put("feed_forward_length", u32v(n("intermediate_size")));
    put("attention.head_count", u32v(n("num_attention_heads")));
    put("attention.head_count_kv", u32v(n("num_key_value_heads")));
    put("context_length", u32v(n("max_position_embeddings")));
    put("attention.key_length", u32v(head_dim));
    put("attention.value_length", u32v(head_dim));
    put("rope.dimension_count", u32v(head_dim));
    put("rope.freq_base", Value::F32(f("rope_theta")));
    put(
        "attention.layer_norm_rms_epsilon",
        Value::F32(f("rms_norm_eps")),
    );
    if let Some(w) = cfg["sliding_window"].as_u64() {
        put("attention.sliding_window", u32v(w as usize));
    }
    if arch == "gemma2" {
        put(
            "attn_logit_softcapping",
            Value::F32(f("attn_logit_softcapping")),
        );
        put(
            "final_logit_softcapping",
            Value::F32(f("final_logit_softcapping")),
        );
        // GGUF has no query_pre_attn_scalar; gim reads the generic attention scale.
        put(
            "attention.scale",
            Value::F32((1.0 / cfg["query_pre_attn_scalar"].as_f64().unwrap().sqrt()) as f32),
        );
    }
}

/// Write the fixture checkpoint of `arch` as a GGUF file; matrices in `ty`, vectors in F32.
fn write_fixture_gguf(arch: &str, path: &Path, ty: GgmlDType) {
    write_gguf_from(&model_dir(arch), arch, path, ty, &mut |_| {});
}

/// GGUF metadata entries in the order they are written.
type Metadata = Vec<(String, Value)>;

fn write_gguf_from(
    dir: &Path,
    arch: &str,
    path: &Path,
    ty: GgmlDType,
    edit: &mut dyn FnMut(&mut Metadata),
) {
    let cfg: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (
            "general.name".into(),
            Value::String(format!("fixture {arch}")),
        ),
        ("general.alignment".into(), Value::U32(32)),
    ];
    model_metadata(arch, &cfg, &mut md);
    tokenizer_metadata(dir, &cfg, &mut md);
    edit(&mut md);
    let st = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = st.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for hf in names {
        let Some(name) = llama_cpp_name(arch, hf) else {
            continue;
        };
        let t = convert(arch, hf, st[hf].to_dtype(DType::F32).unwrap(), &cfg);
        let ty = if t.rank() >= 2 && t.dims()[t.rank() - 1].is_multiple_of(ty.block_size()) {
            ty
        } else {
            GgmlDType::F32
        };
        tensors.push((name, QTensor::quantize(&t, ty).unwrap()));
    }
    if let Some(factors) = llama3_rope_factors(&cfg) {
        let t = Tensor::new(factors, &Device::Cpu).unwrap();
        tensors.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&t, GgmlDType::F32).unwrap(),
        ));
    }
    let mdr: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tr: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &mdr, &tr).unwrap();
}

/// llama.cpp's `rope_freqs.weight` for a `llama3` rope config: the divisor of each frequency
/// (convert_hf_to_gguf.py, `LlamaModel.generate_extra_tensors`).
fn llama3_rope_factors(cfg: &Json) -> Option<Vec<f32>> {
    let p = &cfg["rope_parameters"];
    if p["rope_type"] != "llama3" {
        return None;
    }
    let f = |k: &str| p[k].as_f64().unwrap();
    let (factor, low, high, old) = (
        f("factor"),
        f("low_freq_factor"),
        f("high_freq_factor"),
        f("original_max_position_embeddings"),
    );
    let dim = cfg["head_dim"].as_u64().unwrap() as usize;
    let base = f("rope_theta") as f32;
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    Some(
        (0..dim / 2)
            .map(|i| {
                let freq = 1.0 / base.powf((2 * i) as f32 / dim as f32);
                let wavelen = 2.0 * std::f64::consts::PI / freq as f64;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor as f32
                } else {
                    let smooth = (old / wavelen - low) / (high - low);
                    (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                }
            })
            .collect(),
    )
}

/// Logits and every rule set's attributions of `m` against the float64 fixture of `arch`.
fn check_against_fixture(m: &gim::LoadedModel, arch: &str, tag: &str) -> (f64, f64) {
    let fx = fixture(arch);
    let (mut worst_logit, mut worst_attr) = (0.0f64, 0.0f64);
    for case in fx["cases"].as_array().unwrap() {
        let ids = u32s(&case["input_ids"]);
        let enc = m.tok.encode(case["text"].as_str().unwrap(), true).unwrap();
        assert_eq!(enc, ids, "{tag}: tokenization of {:?}", case["text"]);
        let err = rel_err(&last_logits(m, &ids), &f64s(&case["logits_last"]));
        assert!(
            err <= 1e-4,
            "{tag} {}: logits rel err {err:.3e}",
            case["name"]
        );
        worst_logit = worst_logit.max(err);
        for (set, reference) in case["attributions"].as_object().unwrap() {
            let a = attribute(m, &fixture_request(case, set)).unwrap();
            let err = rel_err(&a.attributions, &f64s(reference));
            assert!(
                err <= 1e-4,
                "{tag} {} {set}: attribution rel err {err:.3e}",
                case["name"]
            );
            worst_attr = worst_attr.max(err);
        }
    }
    (worst_logit, worst_attr)
}

#[test]
fn gguf_conversions_of_every_family_match_the_float64_references() {
    let dir = tmpdir("gguf-families");
    for arch in ARCHS {
        let path = dir.join(format!("{arch}.gguf"));
        write_fixture_gguf(arch, &path, GgmlDType::F32);
        let m = gim::load(path.to_str().unwrap(), &Default::default())
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(m.model.cfg.model_type, *arch);
        assert_eq!(m.name, *arch);
        // the same model as from safetensors (only Gemma's `1 + w` norms were rounded on the way)
        let st = gim::load(model_dir(arch).to_str().unwrap(), &Default::default()).unwrap();
        let mut cfg_gguf = m.model.cfg.clone();
        // Gemma2's attention scale went through an f32 field
        let scale = cfg_gguf.attn_scale / st.model.cfg.attn_scale;
        assert!((scale - 1.0).abs() < 1e-6, "{arch}: attention scale");
        cfg_gguf.attn_scale = st.model.cfg.attn_scale;
        assert_eq!(cfg_gguf, st.model.cfg, "{arch}: config from GGUF metadata");
        let ids = u32s(&fixture(arch)["cases"][0]["input_ids"]);
        let same = rel_err(&last_logits(&m, &ids), &last_logits(&st, &ids));
        assert!(
            same <= 1e-6,
            "{arch}: GGUF vs safetensors logits {same:.2e}"
        );
        let (l, a) = check_against_fixture(&m, arch, arch);
        println!(
            "{arch}: vs safetensors {same:.1e}, vs float64 logits {l:.1e}, attributions {a:.1e}"
        );
    }
}

#[test]
fn llama3_rope_scaling_comes_from_rope_freqs() {
    // The llama fixture with Llama 3.1-style rope scaling: one frequency kept, one smoothed,
    // six divided by the factor (head_dim 16, theta 5e5, original context 128).
    let dir = tmpdir("gguf-llama3");
    let hf = dir.join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    for f in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(model_dir("llama").join(f), hf.join(f)).unwrap();
    }
    let mut cfg: Json = serde_json::from_str(
        &std::fs::read_to_string(model_dir("llama").join("config.json")).unwrap(),
    )
    .unwrap();
    cfg["rope_parameters"] = serde_json::json!({
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 128
    });
    std::fs::write(hf.join("config.json"), cfg.to_string()).unwrap();
    let path = dir.join("llama3.gguf");
    write_gguf_from(&hf, "llama", &path, GgmlDType::F32, &mut |_| {});
    let g = gim::load(path.to_str().unwrap(), &Default::default()).unwrap();
    let st = gim::load(hf.to_str().unwrap(), &Default::default()).unwrap();
    let plain = gim::load(model_dir("llama").to_str().unwrap(), &Default::default()).unwrap();
    let (gimfreq, stfreq) = match (&g.model.cfg.positional, &st.model.cfg.positional) {
        (
            gim::model::config::Positional::Rotary { inv_freq: a, .. },
            gim::model::config::Positional::Rotary { inv_freq: b, .. },
        ) => (a.clone(), b.clone()),
        _ => panic!("rotary"),
    };
    let freq_err = rel_err(&gimfreq, &stfreq);
    assert!(freq_err < 1e-6, "inv_freq {gimfreq:?} vs {stfreq:?}");
    let ids: Vec<u32> = (0..100).map(|i| 3 + (i * 37 % 380) as u32).collect();
    let same = rel_err(&last_logits(&g, &ids), &last_logits(&st, &ids));
    let moved = rel_err(&last_logits(&g, &ids), &last_logits(&plain, &ids));
    println!("llama3 rope: inv_freq {freq_err:.1e}, logits vs safetensors {same:.1e}, vs no scaling {moved:.1e}");
    assert!(same < 1e-5, "llama3 GGUF vs safetensors {same:.2e}");
    assert!(moved > 1e-4, "the scaling changed nothing ({moved:.2e})");
}

#[test]
fn every_quantisation_type_loads_with_its_own_rounding() {
    let dir = tmpdir("gguf-quants");
    let f32_path = dir.join("f32.gguf");
    write_fixture_gguf("llama", &f32_path, GgmlDType::F32);
    let reference = gim::load(f32_path.to_str().unwrap(), &Default::default()).unwrap();
    let ids = u32s(&fixture("llama")["cases"][0]["input_ids"]);
    let exact = last_logits(&reference, &ids);
    // Fixture matrices are 64 or 128 wide: the 32-blocks fit; the K-quants' 256-blocks are below.
    for (ty, tol) in [
        (GgmlDType::F16, 2e-3),
        (GgmlDType::BF16, 2e-2),
        (GgmlDType::Q8_0, 6e-2),
        (GgmlDType::Q5_0, 0.4),
        (GgmlDType::Q5_1, 0.4),
        (GgmlDType::Q4_0, 0.6),
        (GgmlDType::Q4_1, 0.6),
    ] {
        let path = dir.join(format!("{ty:?}.gguf"));
        write_fixture_gguf("llama", &path, ty);
        let m = gim::load(path.to_str().unwrap(), &Default::default())
            .unwrap_or_else(|e| panic!("{ty:?}: {e}"));
        // each weight is exactly candle's dequantisation of the stored blocks, un-permuted
        let st = candle_core::safetensors::load(
            model_dir("llama").join("model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let q = &st["model.layers.1.self_attn.q_proj.weight"];
        let stored = QTensor::quantize(&permute(q, 4), ty).unwrap();
        let back = stored.dequantize(&Device::Cpu).unwrap();
        let expect = back
            .reshape((4, 8, 2, 64))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((64, 64))
            .unwrap();
        // loaded in f32 on the CPU, the linear weights are held in strips for gim's products
        let q = &m.model.w.blocks[1].attn.q.w;
        assert!(matches!(q, Weight::Strips(_)), "{ty:?}: {q:?}");
        let d = max_abs_diff(&q.tensor().unwrap(), &expect);
        assert_eq!(
            d, 0.0,
            "{ty:?}: q_proj is not the dequantised stored tensor"
        );
        let err = rel_err(&last_logits(&m, &ids), &exact);
        println!("{ty:?}: logits rel err {err:.2e} against f32");
        assert!(err <= tol, "{ty:?}: logits rel err {err:.3e} > {tol}");
    }
}

#[test]
fn k_quants_load_on_a_model_wide_enough_for_their_blocks() {
    // A random llama 256 wide (K-quant blocks are 256 values), with the fixture tokenizer.
    let dir = tmpdir("gguf-kquants");
    let hf = dir.join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    std::fs::copy(
        model_dir("llama").join("tokenizer.json"),
        hf.join("tokenizer.json"),
    )
    .unwrap();
    let mut cfg: Json = serde_json::from_str(
        &std::fs::read_to_string(model_dir("llama").join("config.json")).unwrap(),
    )
    .unwrap();
    cfg["hidden_size"] = 256.into();
    cfg["intermediate_size"] = 512.into();
    cfg["head_dim"] = 64.into();
    cfg["num_hidden_layers"] = 1.into();
    std::fs::write(hf.join("config.json"), cfg.to_string()).unwrap();
    let dev = Device::Cpu;
    let r = |shape: &[usize], s: f64| Tensor::randn(0f32, s as f32, shape, &dev).unwrap();
    let ones = Tensor::ones(256, DType::F32, &dev).unwrap();
    let mut t = std::collections::HashMap::new();
    t.insert("model.embed_tokens.weight".to_string(), r(&[384, 256], 1.0));
    t.insert("lm_head.weight".to_string(), r(&[384, 256], 0.05));
    t.insert("model.norm.weight".to_string(), ones.clone());
    let p = "model.layers.0";
    t.insert(format!("{p}.input_layernorm.weight"), ones.clone());
    t.insert(format!("{p}.post_attention_layernorm.weight"), ones.clone());
    for (n, shape) in [
        ("self_attn.q_proj", [256, 256]),
        ("self_attn.k_proj", [128, 256]),
        ("self_attn.v_proj", [128, 256]),
        ("self_attn.o_proj", [256, 256]),
        ("mlp.gate_proj", [512, 256]),
        ("mlp.up_proj", [512, 256]),
        ("mlp.down_proj", [256, 512]),
    ] {
        t.insert(format!("{p}.{n}.weight"), r(&shape, 0.05));
    }
    candle_core::safetensors::save(&t, hf.join("model.safetensors")).unwrap();
    let ids = [50u32, 299, 334, 312, 262, 373, 88];
    for ty in [
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ] {
        let path = dir.join(format!("{ty:?}.gguf"));
        write_gguf_from(&hf, "llama", &path, ty, &mut |_| {});
        let m = gim::load(path.to_str().unwrap(), &Default::default())
            .unwrap_or_else(|e| panic!("{ty:?}: {e}"));
        let k = &t[&format!("{p}.self_attn.k_proj.weight")];
        let back = QTensor::quantize(&permute(k, 2), ty)
            .unwrap()
            .dequantize(&dev)
            .unwrap();
        let expect = back
            .reshape((2, 32, 2, 256))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((128, 256))
            .unwrap();
        let d = max_abs_diff(&m.model.w.blocks[0].attn.k.w.tensor().unwrap(), &expect);
        assert_eq!(
            d, 0.0,
            "{ty:?}: k_proj is not the dequantised stored tensor"
        );
        let l = last_logits(&m, &ids);
        assert!(l.iter().all(|x| x.is_finite()), "{ty:?}: logits");
    }
}

#[test]
fn bf16_and_f16_compute_dtypes_load_from_gguf() {
    let dir = tmpdir("gguf-dtypes");
    let path = dir.join("qwen2.gguf");
    write_fixture_gguf("qwen2", &path, GgmlDType::Q8_0);
    let ids = u32s(&fixture("qwen2")["cases"][0]["input_ids"]);
    let f32m = gim::load(path.to_str().unwrap(), &Default::default()).unwrap();
    let base = last_logits(&f32m, &ids);
    for dtype in [DType::BF16, DType::F16] {
        let opts = gim::LoadOpts {
            dtype,
            ..Default::default()
        };
        let m = gim::load(path.to_str().unwrap(), &opts).unwrap();
        assert_eq!(m.model.w.embed.dtype(), dtype);
        // gim's strips are f32 only: other compute dtypes keep their weights as tensors
        let q = &m.model.w.blocks[0].attn.q.w;
        assert!(
            matches!(q, Weight::Tensor(t) if t.dtype() == dtype),
            "{dtype:?}: {q:?}"
        );
        let err = rel_err(&last_logits(&m, &ids), &base);
        assert!(err < 5e-2, "{dtype:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF files we did not write: tests/fixtures/gguf/ (made with the `gguf` Python package by
// tools/fixtures_to_gguf.py and checked against transformers), with float64 logits of the
// dequantised weights in expected.json.
// ---------------------------------------------------------------------------------------------

fn gguf_fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf")
}

#[test]
fn gguf_files_made_by_the_gguf_package_match_their_float64_logits() {
    let dir = gguf_fixtures_dir();
    let expected: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let prompts = expected["prompts"].as_array().unwrap();
    let files = expected["files"].as_array().unwrap();
    assert!(files.len() >= 11);
    for f in files {
        let (file, arch, ty) = (
            f["file"].as_str().unwrap(),
            f["family"].as_str().unwrap(),
            f["type"].as_str().unwrap(),
        );
        let m = gim::load(dir.join(file).to_str().unwrap(), &Default::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut worst = 0.0f64;
        for (p, want) in prompts
            .iter()
            .zip(f["expected_logits_last"].as_array().unwrap())
        {
            let ids = u32s(&p["input_ids"]);
            let enc = m.tok.encode(p["text"].as_str().unwrap(), true).unwrap();
            assert_eq!(enc, ids, "{file}: tokenization of {}", p["text"]);
            let err = rel_err(&last_logits(&m, &ids), &f64s(want));
            assert!(err <= 1e-4, "{file}: logits rel err {err:.3e}");
            worst = worst.max(err);
        }
        print!("{file}: vs its dequantised float64 logits {worst:.1e}");
        // an unquantised file is the fixture checkpoint itself: the shared references hold
        if ty == "F32" {
            let (l, a) = check_against_fixture(&m, arch, file);
            print!(", vs the shared float64 fixture: logits {l:.1e}, attributions {a:.1e}");
        }
        println!();
    }
}

// ---------------------------------------------------------------------------------------------
// The real model: SmolLM2-135M-Instruct, Q4_1 (fetched by `make model`).
// ---------------------------------------------------------------------------------------------

fn smollm2_path() -> PathBuf {
    let p = gim::loader::resolve("smollm2-135m").unwrap_or_else(|e| panic!("{e}"));
    assert!(p.is_file());
    p
}

fn smollm2() -> gim::LoadedModel {
    let t0 = std::time::Instant::now();
    let m = gim::load("smollm2-135m", &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    println!("smollm2-135m loaded in {:.2} s", t0.elapsed().as_secs_f64());
    m
}

#[test]
fn smollm2_predicts_like_transformers() {
    let m = smollm2();
    let c = &m.model.cfg;
    assert_eq!(
        (
            c.model_type.as_str(),
            c.n_layers,
            c.n_heads,
            c.n_kv_heads,
            c.d_model,
            c.vocab_size
        ),
        ("llama", 30, 9, 3, 576, 49152)
    );
    assert!(c.tie_embeddings);
    assert_eq!(m.name, "smollm2-135m");
    let ids = m.tok.encode("The capital of France is", true).unwrap();
    assert_eq!(ids, [504, 3575, 282, 4649, 314]);
    let l = last_logits(&m, &ids);
    let top = (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
    assert_eq!(top, 7042, "top-1 after `The capital of France is`");
    assert_eq!(m.tok.decode_one(7042), " Paris");
    let ids = m
        .tok
        .encode(
            "When Mary and John went to the store, John gave a drink to",
            true,
        )
        .unwrap();
    let l = last_logits(&m, &ids);
    let mary = m.tok.encode(" Mary", false).unwrap()[0] as usize;
    let john = m.tok.encode(" John", false).unwrap()[0] as usize;
    let diff = l[mary] - l[john];
    println!("logit( Mary) - logit( John) = {diff:.5}");
    assert!((diff - 6.12).abs() < 0.05, "IOI logit difference {diff}");
}

#[test]
fn smollm2_tokenizer_gives_transformers_ids() {
    let m = smollm2();
    // AutoTokenizer.from_pretrained(dir, gguf_file=...) of transformers 5.24
    let cases: &[(&str, &[u32])] = &[
        ("café", &[83, 1939, 2756]),
        ("日本語", &[23274, 115, 40993, 179, 120, 248]),
        (
            "I ❤️ 🦀 and 🤗!",
            &[
                57, 4636, 247, 114, 31752, 15107, 116, 218, 284, 15107, 114, 241, 17,
            ],
        ),
        (
            "  two  spaces\tand\nnewline",
            &[216, 827, 216, 5600, 197, 397, 198, 28160],
        ),
        ("<|im_start|>user\nHi<|im_end|>", &[1, 4093, 198, 26843, 2]),
        (
            "Numbers 12345 and 3.14",
            &[39006, 216, 33, 34, 35, 36, 37, 284, 216, 35, 30, 33, 36],
        ),
        (
            "naïve façade — “quotes”",
            &[3546, 46494, 40852, 1841, 619, 385, 2346, 573],
        ),
    ];
    for (text, ids) in cases {
        assert_eq!(m.tok.encode(text, true).unwrap(), *ids, "{text:?}");
        assert_eq!(m.tok.decode(ids), *text, "decode {text:?}");
    }
}

/// max |ours − ref| / max |ref| over the reference's `[id, value]` pairs.
fn top100_err(ours: &[f64], top: &Json) -> f64 {
    let pairs = top.as_array().unwrap();
    let ids: Vec<usize> = pairs
        .iter()
        .map(|p| p[0].as_u64().unwrap() as usize)
        .collect();
    let want: Vec<f64> = pairs.iter().map(|p| p[1].as_f64().unwrap()).collect();
    let got: Vec<f64> = ids.iter().map(|&i| ours[i]).collect();
    rel_err(&got, &want)
}

#[test]
fn smollm2_matches_the_transformers_float64_reference() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/smollm2-135m/reference.json");
    let r: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let m = smollm2();
    assert_eq!(
        r["model"]["gguf_sha256"].as_str().unwrap(),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    let (mut worst_logit, mut worst_attr) = (0.0f64, 0.0f64);
    for case in r["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let ids = u32s(&case["input_ids"]);
        let enc = m.tok.encode(case["text"].as_str().unwrap(), true).unwrap();
        assert_eq!(enc, ids, "{name}: tokenization");
        let pos = case["target_position_index"].as_u64().unwrap() as usize;
        let err = top100_err(
            &logits(&m, &ids, Positions::At(vec![pos])),
            &case["logits_top100"],
        );
        worst_logit = worst_logit.max(err);
        assert!(err <= 1e-4, "{name}: top-100 logits rel err {err:.3e}");
        if let Some(last) = case.get("logits_last_top100") {
            let err = top100_err(&last_logits(&m, &ids), last);
            worst_logit = worst_logit.max(err);
            assert!(
                err <= 1e-4,
                "{name}: last-position logits rel err {err:.3e}"
            );
        }
        let target = case["target_token_id"].as_u64().unwrap() as u32;
        for (set, reference) in case["attributions"].as_object().unwrap() {
            let (method, rules) = rules_for(set);
            let mut req = AttributeRequest::new(ids.clone());
            req.method = method;
            req.rules = rules;
            req.baseline = Baseline::Default;
            req.position = Some(case["target_position"].as_i64().unwrap());
            req.target = match case["target_kind"].as_str().unwrap() {
                "argmax" => TargetSpec::Argmax,
                _ => TargetSpec::Id(target),
            };
            if case["target_kind"] == "contrast" {
                req.contrast = Some(TargetSpec::Id(
                    case["foil_token_id"].as_u64().unwrap() as u32
                ));
            }
            let a = attribute(&m, &req).unwrap();
            assert_eq!(a.target_id, target, "{name} {set}: target");
            assert_eq!(a.baseline_id, Some(216), "{name} {set}: baseline");
            let tv = case["target_value"].as_f64().unwrap();
            assert!(
                (a.target_logit - tv).abs() <= 1e-4 * tv.abs().max(1.0),
                "{name} {set}: attributed value {} vs {tv}",
                a.target_logit
            );
            let err = rel_err(&a.attributions, &f64s(reference));
            worst_attr = worst_attr.max(err);
            if err > 1e-5 {
                println!("{name} {set}: attribution rel err {err:.2e}");
            }
            assert!(err <= 1e-4, "{name} {set}: attribution rel err {err:.3e}");
        }
    }
    println!("smollm2-135m vs transformers float64: logits {worst_logit:.2e}, attributions {worst_attr:.2e}");
}

// ---------------------------------------------------------------------------------------------
// Broken files through the real binary: one `error:` line, exit 1, no panic.
// ---------------------------------------------------------------------------------------------

fn gim_cli(args: &[&str], cache: Option<&Path>) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gim"));
    c.args(args).env("HF_HUB_OFFLINE", "1");
    if let Some(dir) = cache {
        c.env("GIM_CACHE", dir);
    }
    let out = c.output().expect("run gim");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn fails_with(file: &Path, needle: &str) {
    let (code, _, err) = gim_cli(
        &["logits", "--model", file.to_str().unwrap(), "--ids", "1"],
        None,
    );
    assert_eq!(code, 1, "{needle}: exit {code}, stderr {err}");
    assert!(!err.contains("panicked"), "{needle}: panicked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{needle}: {err:?}");
    assert!(err.starts_with("error:"), "{err:?}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "{err:?} lacks {needle:?}"
    );
}

/// Byte offset just after the first occurrence of `needle`.
fn after(bytes: &[u8], needle: &[u8]) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in the file", String::from_utf8_lossy(needle)))
        + needle.len()
}

/// Offset of a tensor's record in the header: (n_dims, dims…, type, offset) after its name.
fn tensor_record(bytes: &[u8], name: &str) -> usize {
    let mut key = (name.len() as u64).to_le_bytes().to_vec();
    key.extend(name.as_bytes());
    after(bytes, &key)
}

#[test]
fn broken_gguf_files_fail_with_one_line() {
    let real = std::fs::read(smollm2_path()).unwrap();
    let dir = tmpdir("gguf-broken");
    let path = dir.join("broken.gguf");
    let write = |b: &[u8]| std::fs::write(&path, b).unwrap();
    let patched = |at: usize, with: &[u8]| {
        let mut b = real.clone();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };

    // wrong magic, and a file that is not one at all
    write(&patched(0, b"GGUX"));
    fails_with(&path, "not a GGUF file");
    write(b"{\"model_type\": \"llama\"}");
    fails_with(&path, "not a GGUF file");
    write(&patched(4, &7u32.to_le_bytes()));
    fails_with(&path, "version 7");

    // cut at several offsets: inside the magic, the counts, the metadata, the tensor table,
    // and the tensor data
    let data_start = 1_785_664;
    for cut in [
        2,
        10,
        20,
        1_000,
        400_000,
        1_700_000,
        data_start + 16,
        50_000_000,
        real.len() - 1,
    ] {
        write(&real[..cut]);
        fails_with(&path, "truncated");
    }

    // header fields flipped
    write(&patched(8, &u64::MAX.to_le_bytes()));
    fails_with(&path, "truncated or corrupt");
    let arch = after(&real, b"general.architecture") + 4 + 8;
    write(&patched(arch, b"llamx"));
    fails_with(&path, "architecture `llamx` is not supported");
    let tok = after(&real, b"tokenizer.ggml.model") + 4 + 8;
    write(&patched(tok, b"bert"));
    fails_with(&path, "tokenizer model `bert`");
    let layers = after(&real, b"llama.block_count") + 4;
    write(&patched(layers, &31u32.to_le_bytes()));
    fails_with(&path, "no tensor `blk.30.");
    write(&patched(layers, &u32::MAX.to_le_bytes()));
    fails_with(&path, "inconsistent");
    let heads = after(&real, b"llama.attention.head_count") + 4;
    write(&patched(heads, &6u32.to_le_bytes()));
    fails_with(&path, "has shape");
    write(&patched(heads, &u32::MAX.to_le_bytes()));
    fails_with(&path, "inconsistent");
    let rope = after(&real, b"llama.rope.dimension_count") + 4;
    write(&patched(rope, &u32::MAX.to_le_bytes()));
    fails_with(&path, "rope over");

    // a tensor record: n_dims (4), dims (2 × 8), type (4), offset (8)
    let q = tensor_record(&real, "blk.0.attn_q.weight");
    let ty = q + 4 + 16;
    write(&patched(ty, &20u32.to_le_bytes()));
    fails_with(&path, "IQ4_NL");
    write(&patched(ty, &9u32.to_le_bytes()));
    fails_with(&path, "Q8_1");
    write(&patched(ty + 4, &(real.len() as u64).to_le_bytes()));
    fails_with(&path, "beyond the end of the file");
    write(&patched(q + 4 + 8, &(1u64 << 40).to_le_bytes()));
    fails_with(&path, "beyond the end of the file");
    write(&patched(q + 4 + 8, &512u64.to_le_bytes()));
    fails_with(&path, "has shape [512, 576]");
    write(&patched(q + 4, &(576u64 + 1).to_le_bytes()));
    fails_with(&path, "corrupt");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sentencepiece_gguf_names_its_tokenizer_and_the_way_out() {
    let dir = tmpdir("gguf-spm");
    let path = dir.join("spm.gguf");
    write_gguf_from(
        &model_dir("llama"),
        "llama",
        &path,
        GgmlDType::F32,
        &mut |md| {
            for (k, v) in md.iter_mut() {
                if k == "tokenizer.ggml.model" {
                    *v = Value::String("llama".into());
                }
            }
        },
    );
    fails_with(&path, "SentencePiece");
    // with the model's tokenizer.json next to it, it loads
    std::fs::copy(
        model_dir("llama").join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let m = gim::load(path.to_str().unwrap(), &Default::default()).unwrap();
    check_against_fixture(&m, "llama", "llama (sentencepiece + tokenizer.json)");
    // a folder without config.json holding one .gguf file loads that file
    let m = gim::load(dir.to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!(m.source, path);
}

#[test]
fn unsupported_architecture_and_rope_scaling_are_named() {
    let dir = tmpdir("gguf-unsupported");
    let path = dir.join("mamba.gguf");
    write_gguf_from(
        &model_dir("llama"),
        "llama",
        &path,
        GgmlDType::F32,
        &mut |md| {
            md[0].1 = Value::String("mamba".into());
        },
    );
    fails_with(&path, "architecture `mamba` is not supported");
    write_gguf_from(
        &model_dir("llama"),
        "llama",
        &path,
        GgmlDType::F32,
        &mut |md| {
            md.push((
                "llama.rope.scaling.type".into(),
                Value::String("yarn".into()),
            ));
            md.push(("llama.rope.scaling.factor".into(), Value::F32(4.0)));
        },
    );
    fails_with(&path, "yarn");
}

#[test]
fn a_named_model_that_is_not_downloaded_says_how_to_get_it() {
    let empty = tmpdir("gguf-empty-cache");
    let (code, _, err) = gim_cli(
        &["logits", "--model", "smollm2-135m", "--ids", "1"],
        Some(&empty),
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.contains("make model"), "{err}");
}

#[test]
fn the_cli_predicts_paris_from_the_named_model() {
    let (code, out, err) = gim_cli(
        &[
            "logits",
            "--model",
            "smollm2-135m",
            "--prompt",
            "The capital of France is",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let first_top = out
        .lines()
        .skip_while(|l| !l.starts_with("top next tokens"))
        .nth(1)
        .unwrap_or("");
    assert!(first_top.contains("Paris"), "{out}");
}
