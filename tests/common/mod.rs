//! Shared helpers for integration tests: the reference fixtures in ../shared/fixtures.
#![allow(dead_code)]

use std::path::PathBuf;

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
