//! `gim train`: small models with known mechanisms, trained on the CPU with candle + AdamW,
//! saved as ordinary Hugging Face checkpoints. Deterministic for a seed and thread count.

pub mod export;
pub mod tasks;

/// The seeded generator now lives in the leaf module [`crate::rng`].
pub use crate::rng;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::Serialize;

use crate::error::{GimError, Result};
use crate::model::init::{init_weights, Init};
use crate::model::{ForwardOpts, ModelConfig, Positions, Transformer};
use crate::rng::Rng;
use tasks::{Batch, Vocab};

/// The toy tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Induction,
    Ioi,
}

#[derive(Debug, Clone)]
pub struct TrainOpts {
    pub seed: u64,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub out: PathBuf,
}

impl TrainOpts {
    pub fn defaults(task: Task, out: PathBuf) -> Self {
        let steps = match task {
            Task::Induction => 1500,
            Task::Ioi => 2500,
        };
        TrainOpts {
            seed: 0,
            steps,
            batch: 32,
            lr: 3e-3,
            out,
        }
    }
}

/// What training achieved (saved as `train_report.json` beside the checkpoint).
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub task: Task,
    pub seed: u64,
    pub steps: usize,
    pub batch: usize,
    pub seconds: f64,
    pub final_loss: f64,
    /// accuracy on freshly sampled held-out data (induction: second-half tokens; IOI: held-out templates)
    pub heldout_accuracy: f64,
    /// IOI only: accuracy on unseen examples of the training templates
    pub train_template_accuracy: Option<f64>,
    pub n_params: usize,
}

fn hf_config(task: Task, vocab: usize) -> serde_json::Value {
    let layers = match task {
        Task::Induction => 2,
        Task::Ioi => 3,
    };
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 16,
        "num_hidden_layers": layers,
        "vocab_size": vocab,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "tie_word_embeddings": false,
        "bos_token_id": tasks::BOS,
        "eos_token_id": tasks::BOS,
        "pad_token_id": tasks::PAD,
        "torch_dtype": "float32",
        "dtype": "float32",
        "gim_task": task,
    })
}

fn vocab_for(task: Task) -> Vocab {
    match task {
        Task::Induction => Vocab::new(&tasks::induction_symbols()),
        Task::Ioi => Vocab::new(&tasks::ioi_words()),
    }
}

fn batch(task: Task, v: &Vocab, rng: &mut Rng, b: usize, heldout: bool) -> Batch {
    match task {
        Task::Induction => tasks::induction_batch(v, rng, b),
        Task::Ioi => {
            let n_train = tasks::IOI_TRAIN_TEMPLATES.len();
            let t: Vec<usize> = if heldout {
                (n_train..n_train + tasks::IOI_HELDOUT_TEMPLATES.len()).collect()
            } else {
                (0..n_train).collect()
            };
            tasks::ioi_batch(v, rng, b, &t)
        }
    }
}

/// Logits at the batch's target positions `[n, vocab]` and the targets `[n]`.
fn target_logits(m: &Transformer, b: &Batch) -> Result<(Tensor, Tensor)> {
    let e = m.embed_ids(&b.ids)?;
    let mut o = ForwardOpts {
        positions: Positions::All,
        ..Default::default()
    };
    let h = m.forward_hidden(&e, &mut o)?;
    let (bs, s, d) = h.dims3()?;
    let mut idx = Vec::new();
    let mut tg = Vec::new();
    for (r, ts) in b.targets.iter().enumerate() {
        for &(p, t) in ts {
            idx.push((r * s + p) as u32);
            tg.push(t);
        }
    }
    let n = idx.len();
    let hs = h
        .reshape((bs * s, d))?
        .index_select(&Tensor::from_vec(idx, n, &m.device)?, 0)?;
    let logits = m.unembed(&hs.unsqueeze(0)?)?.i(0)?;
    Ok((logits, Tensor::from_vec(tg, n, &m.device)?))
}

fn accuracy(m: &Transformer, b: &Batch) -> Result<f64> {
    let (l, t) = target_logits(m, b)?;
    let pred: Vec<u32> = l.argmax(1)?.to_vec1()?;
    let t: Vec<u32> = t.to_vec1()?;
    Ok(pred.iter().zip(&t).filter(|(a, b)| a == b).count() as f64 / t.len().max(1) as f64)
}

/// Train `task` and save the checkpoint to `opts.out`. `progress(step, loss)` is called each step.
pub fn train(
    task: Task,
    opts: &TrainOpts,
    mut progress: impl FnMut(usize, f64),
) -> Result<TrainReport> {
    let start = Instant::now();
    let dev = Device::Cpu;
    let vocab = vocab_for(task);
    let hf = hf_config(task, vocab.len());
    let cfg = ModelConfig::from_hf(&hf)?;
    let mut rng = Rng::new(opts.seed);
    let mut vars: BTreeMap<String, Var> = BTreeMap::new();
    let w = init_weights(&cfg, &mut |name, dims, init| {
        let n: usize = dims.iter().product();
        let vals: Vec<f32> = match init {
            Init::Normal(s) => (0..n).map(|_| (rng.normal() * s) as f32).collect(),
            Init::Zeros => vec![0.0; n],
            Init::NormScale => vec![1.0; n],
        };
        let v = Var::from_tensor(&Tensor::from_vec(vals, dims, &dev)?)?;
        let t = v.as_tensor().clone();
        vars.insert(name.to_string(), v);
        Ok(t)
    })?;
    let model = Transformer::new(cfg, w, dev.clone(), DType::F32);
    let params = ParamsAdamW {
        lr: opts.lr,
        weight_decay: 0.01,
        ..Default::default()
    };
    let mut opt = AdamW::new(vars.values().cloned().collect(), params)?;
    let mut data_rng = Rng::new(opts.seed.wrapping_add(1));
    let mut last = f64::NAN;
    for step in 0..opts.steps {
        // linear warm-up over 100 steps, then cosine decay to 10%
        let warm = ((step + 1) as f64 / 100.0).min(1.0);
        let prog = step as f64 / opts.steps.max(1) as f64;
        opt.set_learning_rate(opts.lr * warm * (0.55 + 0.45 * (std::f64::consts::PI * prog).cos()));
        let b = batch(task, &vocab, &mut data_rng, opts.batch, false);
        let (logits, targets) = target_logits(&model, &b)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
        opt.backward_step(&loss)?;
        last = loss.to_scalar::<f32>()? as f64;
        if !last.is_finite() {
            return Err(GimError::input(format!(
                "training diverged at step {step} (loss {last})"
            )));
        }
        progress(step, last);
    }
    let mut eval_rng = Rng::new(opts.seed.wrapping_add(1_000_003));
    let eval = |heldout: bool, rng: &mut Rng| -> Result<f64> {
        let mut acc = 0.0;
        for _ in 0..8 {
            acc += accuracy(&model, &batch(task, &vocab, rng, 64, heldout))?;
        }
        Ok(acc / 8.0)
    };
    let heldout_accuracy = eval(true, &mut eval_rng)?;
    let train_template_accuracy = match task {
        Task::Ioi => Some(eval(false, &mut eval_rng)?),
        Task::Induction => None,
    };
    let report = TrainReport {
        task,
        seed: opts.seed,
        steps: opts.steps,
        batch: opts.batch,
        seconds: start.elapsed().as_secs_f64(),
        final_loss: last,
        heldout_accuracy,
        train_template_accuracy,
        n_params: model.n_params(),
    };
    save(&opts.out, task, &hf, &vocab, &model, &report)?;
    Ok(report)
}

fn save(
    dir: &Path,
    task: Task,
    hf: &serde_json::Value,
    vocab: &Vocab,
    m: &Transformer,
    r: &TrainReport,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| GimError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let w = |name: &str, text: String| -> Result<()> {
        std::fs::write(dir.join(name), text)
            .map_err(|e| GimError::Io(format!("cannot write {name}: {e}")))
    };
    w("config.json", export::pretty(hf)?)?;
    export::save_llama_weights(&m.w, &dir.join("model.safetensors"))?;
    export::save_tokenizer(vocab, dir)?;
    w(
        "generation_config.json",
        export::pretty(
            &serde_json::json!({"bos_token_id": tasks::BOS, "pad_token_id": tasks::PAD}),
        )?,
    )?;
    w(
        "train_report.json",
        export::pretty(&serde_json::to_value(r).map_err(|e| GimError::Io(e.to_string()))?)?,
    )?;
    if task == Task::Ioi {
        // the counterfactual prompt set: 10 per template, fixed seed
        let mut rng = Rng::new(12345);
        let mut lines = String::new();
        let n = tasks::IOI_TRAIN_TEMPLATES.len() + tasks::IOI_HELDOUT_TEMPLATES.len();
        for t in 0..n {
            for _ in 0..10 {
                let ex = tasks::ioi_example(&mut rng, t);
                lines.push_str(
                    &serde_json::to_string(&ex).map_err(|e| GimError::Io(e.to_string()))?,
                );
                lines.push('\n');
            }
        }
        w("ioi_prompts.jsonl", lines)?;
    }
    Ok(())
}
