//! Shared helpers for integration tests: the reference fixtures in ../shared/fixtures.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::{DType, Tensor};
use gim::attribution::{AttributeRequest, Baseline, Method, TargetSpec};
use gim::model::{GimRules, Positions};
use serde_json::Value;

pub const ARCHS: &[&str] = &[
    "gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3",
];

pub fn fixtures_dir() -> PathBuf {
    if let Ok(p) = std::env::var("GIM_FIXTURES") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

pub fn fixture(arch: &str) -> Value {
    let p = fixtures_dir().join(format!("{arch}.json"));
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

pub fn model_dir(arch: &str) -> PathBuf {
    fixtures_dir().join("models").join(arch)
}

pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

pub fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as u32)
        .collect()
}

/// max |a - b| / max |b|
pub fn rel_err(ours: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "length mismatch");
    let scale = reference
        .iter()
        .fold(0.0f64, |m, x| m.max(x.abs()))
        .max(1e-30);
    ours.iter()
        .zip(reference)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gim-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

/// The last position's logits of `ids`, as f64.
pub fn last_logits(m: &gim::LoadedModel, ids: &[u32]) -> Vec<f64> {
    logits(m, ids, Positions::Last)
}

/// The logits of `ids` at `at`, flattened, as f64.
pub fn logits(m: &gim::LoadedModel, ids: &[u32], at: Positions) -> Vec<f64> {
    m.model
        .logits(&[ids.to_vec()], at)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The method and rules of a fixture's rule-set name.
pub fn rules_for(name: &str) -> (Method, GimRules) {
    match name {
        "plain" => (Method::Gradient, GimRules::off()),
        "gim" => (Method::Gim, GimRules::gim()),
        "freeze_norm_only" => (Method::Gim, GimRules::freeze_norm_only()),
        "softmax_T_only" => (Method::Gim, GimRules::softmax_t_only()),
        "qkv_only" => (Method::Gim, GimRules::qkv_only()),
        "gate_up_only" => (Method::Gim, GimRules::gate_up_only()),
        other => panic!("unknown rule set {other}"),
    }
}

/// The request of one fixture case under the rule set `set`: its ids, its target (argmax or
/// `target_token_id`), the default baseline.
pub fn fixture_request(case: &Value, set: &str) -> AttributeRequest {
    let (method, rules) = rules_for(set);
    let mut req = AttributeRequest::new(u32s(&case["input_ids"]));
    req.method = method;
    req.rules = rules;
    req.target = if case["target_kind"] == "argmax" {
        TargetSpec::Argmax
    } else {
        TargetSpec::Id(case["target_token_id"].as_u64().unwrap() as u32)
    };
    req.baseline = Baseline::Default;
    req
}

/// max |a − b| over all elements.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
