//! Model invariants on tiny checkpoints we write ourselves: causal masking, GQA = explicit head
//! repetition, sharded = single-file loading, bf16 checkpoints, old-style rope config keys.

mod common;
use common::*;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use gim::model::Positions;

fn all_logits(m: &gim::LoadedModel, ids: &[u32]) -> Tensor {
    m.model.logits(&[ids.to_vec()], Positions::All).unwrap()
}

fn read_tensors(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

/// Copy a fixture folder except its weights.
fn copy_meta(src: &Path, dst: &Path) {
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
}

#[test]
fn causal_masking_later_tokens_do_not_change_earlier_logits() {
    for arch in ARCHS {
        let m = gim::load(model_dir(arch).to_str().unwrap(), &Default::default()).unwrap();
        let a: Vec<u32> = vec![10, 20, 30, 40, 50, 60, 70, 80];
        let mut b = a.clone();
        b[5] = 99;
        b[7] = 123;
        let la = all_logits(&m, &a);
        let lb = all_logits(&m, &b);
        let d_before = max_abs_diff(&la.narrow(1, 0, 5).unwrap(), &lb.narrow(1, 0, 5).unwrap());
        let d_after = max_abs_diff(&la.narrow(1, 5, 3).unwrap(), &lb.narrow(1, 5, 3).unwrap());
        assert_eq!(d_before, 0.0, "{arch}: positions before the change moved");
        assert!(
            d_after > 1e-4,
            "{arch}: changed tokens had no effect ({d_after})"
        );
    }
}

#[test]
fn gqa_equals_explicit_head_repetition() {
    // llama fixture: 4 query heads, 2 kv heads, head_dim 16. Write an equivalent MHA checkpoint.
    let src = model_dir("llama");
    let dir = tmpdir("gqa");
    copy_meta(&src, &dir);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["num_key_value_heads"] = 4.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut t = read_tensors(&src);
    for l in 0..3 {
        for p in ["k_proj", "v_proj"] {
            let name = format!("model.layers.{l}.self_attn.{p}.weight");
            let w = t[&name].clone(); // [2*16, 64]
            let heads: Vec<Tensor> = (0..4)
                .map(|h| w.narrow(0, (h / 2) * 16, 16).unwrap())
                .collect();
            t.insert(name, Tensor::cat(&heads, 0).unwrap());
        }
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let gqa = gim::load(src.to_str().unwrap(), &Default::default()).unwrap();
    let mha = gim::load(dir.to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!(mha.model.cfg.n_kv_heads, 4);
    let ids = [5u32, 17, 33, 250, 7, 99, 140];
    let err = rel_err(&last_logits(&mha, &ids), &last_logits(&gqa, &ids));
    assert!(err < 1e-5, "GQA vs repeated heads: {err}");
}

#[test]
fn sharded_loading_equals_single_file() {
    let src = model_dir("qwen3");
    let dir = tmpdir("shard");
    copy_meta(&src, &dir);
    let t = read_tensors(&src);
    let mut names: Vec<&String> = t.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut index = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        let m: HashMap<String, Tensor> =
            part.iter().map(|n| ((*n).clone(), t[*n].clone())).collect();
        candle_core::safetensors::save(&m, dir.join(file)).unwrap();
        for n in part {
            index.insert((*n).clone(), file.into());
        }
    }
    let idx = serde_json::json!({"metadata": {}, "weight_map": index});
    std::fs::write(dir.join("model.safetensors.index.json"), idx.to_string()).unwrap();
    let one = gim::load(src.to_str().unwrap(), &Default::default()).unwrap();
    let two = gim::load(dir.to_str().unwrap(), &Default::default()).unwrap();
    let ids = [1u32, 2, 3, 100, 200, 300];
    assert_eq!(last_logits(&one, &ids), last_logits(&two, &ids));
}

#[test]
fn bf16_checkpoint_loads_and_matches_f32_within_bf16_precision() {
    let src = model_dir("gemma2");
    let dir = tmpdir("bf16");
    copy_meta(&src, &dir);
    let t: HashMap<String, Tensor> = read_tensors(&src)
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::BF16).unwrap()))
        .collect();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let f32m = gim::load(src.to_str().unwrap(), &Default::default()).unwrap();
    let ids = [50u32, 299, 334, 312, 262, 373];
    // bf16 weights computed in f32
    let b = gim::load(dir.to_str().unwrap(), &Default::default()).unwrap();
    let err = rel_err(&last_logits(&b, &ids), &last_logits(&f32m, &ids));
    assert!(err > 0.0 && err < 3e-2, "bf16 weights in f32: {err}");
    // and computed in bf16
    let opts = gim::LoadOpts {
        dtype: DType::BF16,
        ..Default::default()
    };
    let b16 = gim::load(dir.to_str().unwrap(), &opts).unwrap();
    let err16 = rel_err(&last_logits(&b16, &ids), &last_logits(&f32m, &ids));
    assert!(err16 < 8e-2, "bf16 compute: {err16}");
}

#[test]
fn old_style_rope_keys_and_llama3_scaling_are_read() {
    let src = model_dir("llama");
    let dir = tmpdir("rope-old");
    copy_meta(&src, &dir);
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let obj = cfg.as_object_mut().unwrap();
    obj.remove("rope_parameters");
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let new_style = gim::load(src.to_str().unwrap(), &Default::default()).unwrap();
    let old_style = gim::load(dir.to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!(
        new_style.model.cfg.positional,
        old_style.model.cfg.positional
    );

    // llama3 scaling with the older `rope_scaling` key changes the low frequencies only
    cfg["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
    let scaled = gim::model::ModelConfig::from_hf(&cfg).unwrap();
    let (
        gim::model::config::Positional::Rotary { inv_freq: a, .. },
        gim::model::config::Positional::Rotary { inv_freq: b, .. },
    ) = (&new_style.model.cfg.positional, &scaled.positional)
    else {
        panic!("rotary expected")
    };
    assert_eq!(a[0], b[0], "highest frequency unchanged");
    let last = a.len() - 1;
    assert!(
        (a[last] / b[last] - 8.0).abs() < 1e-3,
        "lowest frequency divided by factor"
    );
}

#[test]
fn repo_ids_resolve_through_the_local_hf_cache_with_revisions() {
    // models--org--name/{refs/main, snapshots/<hash>/...} as huggingface_hub lays it out
    let cache = tmpdir("hfcache");
    let repo = cache.join("models--tiny-org--tiny-llama");
    let hash = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(hash);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), hash).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(model_dir("llama").join(f), snap.join(f)).unwrap();
    }
    let run = |spec: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gim"))
            .args(["logits", "--model", spec, "--ids", "1,2,3", "--json"])
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    let direct = run(model_dir("llama").to_str().unwrap());
    for spec in [
        "tiny-org/tiny-llama",
        "tiny-org/tiny-llama@main",
        &format!("tiny-org/tiny-llama@{hash}"),
    ] {
        let out = run(spec);
        assert!(
            out.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, direct.stdout, "{spec} loads the same model");
    }
    // HF_HOME/hub is used when HF_HUB_CACHE is unset
    let home = tmpdir("hfhome");
    std::fs::rename(&cache, home.join("hub")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gim"))
        .args([
            "logits",
            "--model",
            "tiny-org/tiny-llama",
            "--ids",
            "1,2,3",
            "--json",
        ])
        .env_remove("HF_HUB_CACHE")
        .env("HF_HOME", &home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = run("tiny-org/tiny-llama@nope");
    assert!(!bad.status.success());
}
