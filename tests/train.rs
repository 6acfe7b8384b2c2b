//! Training is deterministic for a seed and writes checkpoints our loader reads back.

mod common;
use common::*;

use gim::train::{train, Task, TrainOpts};

#[test]
fn same_seed_same_weights_and_the_checkpoint_loads() {
    let run = |tag: &str, seed: u64| {
        let dir = tmpdir(tag);
        let opts = TrainOpts {
            seed,
            steps: 15,
            batch: 8,
            lr: 3e-3,
            out: dir.clone(),
        };
        let r = train(Task::Induction, &opts, |_, _| {}).unwrap();
        assert!(r.final_loss.is_finite());
        (std::fs::read(dir.join("model.safetensors")).unwrap(), dir)
    };
    let (a, dir) = run("train-a", 3);
    let (b, _) = run("train-b", 3);
    let (c, _) = run("train-c", 4);
    assert_eq!(a, b, "same seed must give byte-identical weights");
    assert_ne!(a, c, "another seed gives other weights");
    let m = gim::load(dir.to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!(m.model.cfg.model_type, "llama");
    let ids = m.tok.encode("ba ke mi ba ke", true).unwrap();
    assert_eq!(ids.len(), 6, "word-level tokenizer with <bos>");
    let ioi = gim::load("toy-ioi", &Default::default()).unwrap();
    let rep: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models/toy-ioi/train_report.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(rep["heldout_accuracy"].as_f64().unwrap() >= 0.95);
    assert_eq!(ioi.model.cfg.n_layers, 3);
}

#[test]
fn toy_checkpoints_use_the_transformers_llama_layout() {
    // Same tensor names, dtypes and config keys as the llama checkpoint written by transformers'
    // save_pretrained in the fixtures (which transformers itself loads).
    let names = |dir: std::path::PathBuf| -> std::collections::BTreeSet<String> {
        let t = candle_core::safetensors::load(
            dir.join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        t.into_iter()
            .inspect(|(_, v)| assert_eq!(v.dtype(), candle_core::DType::F32))
            .map(|(k, _)| {
                let parts: Vec<&str> = k.split('.').collect();
                if parts.len() > 2 && parts[1] == "layers" {
                    format!("model.layers.N.{}", parts[3..].join("."))
                } else {
                    k
                }
            })
            .collect()
    };
    let fixture = names(model_dir("llama"));
    for toy in ["toy-ioi", "toy-induction"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(toy);
        assert_eq!(
            names(dir.clone()),
            fixture,
            "{toy}: tensor names differ from transformers' llama layout"
        );
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["architectures"][0], "LlamaForCausalLM");
        for k in [
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_key_value_heads",
            "num_hidden_layers",
            "vocab_size",
            "rms_norm_eps",
            "rope_theta",
            "max_position_embeddings",
        ] {
            assert!(cfg.get(k).is_some(), "{toy}: config lacks {k}");
        }
        let tcfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(tcfg["tokenizer_class"], "PreTrainedTokenizerFast");
    }
}
