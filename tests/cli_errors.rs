//! Bad input through the real `gim` binary: one clear line on stderr, non-zero exit, no panic.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

fn gim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gim"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HUB_CACHE",
            std::env::temp_dir().join("gim-empty-hf-cache"),
        )
        .output()
        .expect("run gim");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Fails cleanly: exit 1 (or clap's 2), no panic, stderr is one `error:` line mentioning `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let (code, _out, err) = gim(args);
    assert!(
        code == 1 || code == 2,
        "{args:?}: exit code {code}, stderr {err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let first = err.lines().next().unwrap_or("");
    assert!(first.starts_with("error:"), "{args:?}: stderr {err:?}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: {err:?} lacks {needle:?}"
    );
    if code == 1 {
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: more than one line: {err:?}"
        );
    }
}

fn copy_fixture(arch: &str, tag: &str) -> std::path::PathBuf {
    let dir = tmpdir(tag);
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(model_dir(arch).join(f), dir.join(f)).unwrap();
    }
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn model_loading_errors() {
    fails_with(
        &["logits", "--model", "/no/such/folder", "--ids", "1"],
        "does not exist",
    );
    let d = copy_fixture("llama", "noconfig");
    std::fs::remove_file(d.join("config.json")).unwrap();
    fails_with(&["logits", "--model", s(&d), "--ids", "1"], "config.json");
    let d = copy_fixture("llama", "notok");
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    fails_with(
        &["logits", "--model", s(&d), "--ids", "1"],
        "tokenizer.json",
    );
    let d = copy_fixture("llama", "noweights");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    fails_with(&["logits", "--model", s(&d), "--ids", "1"], "no weights");
    // truncated safetensors
    let d = copy_fixture("llama", "trunc");
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &["logits", "--model", s(&d), "--ids", "1"],
        "corrupt or truncated",
    );
    // garbage safetensors
    std::fs::write(
        d.join("model.safetensors"),
        b"not a safetensors file at all",
    )
    .unwrap();
    fails_with(
        &["logits", "--model", s(&d), "--ids", "1"],
        "corrupt or truncated",
    );
    // a tensor of the wrong shape: claim a wider model
    let d = copy_fixture("llama", "shape");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    cfg["intermediate_size"] = 96.into();
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    fails_with(&["logits", "--model", s(&d), "--ids", "1"], "has shape");
    // unsupported architecture and unsupported math-changing config field
    cfg["model_type"] = "mamba".into();
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    fails_with(
        &["logits", "--model", s(&d), "--ids", "1"],
        "model_type `mamba` is not supported",
    );
    cfg["model_type"] = "llama".into();
    cfg["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
    cfg.as_object_mut().unwrap().remove("rope_parameters");
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    fails_with(&["logits", "--model", s(&d), "--ids", "1"], "yarn");
    // a repo id that is not in the (empty) cache while offline
    fails_with(
        &["logits", "--model", "Qwen/Qwen2.5-1.5B", "--ids", "1"],
        "not in the local Hugging Face cache",
    );
}

#[test]
fn input_errors() {
    let m = model_dir("gpt2");
    let m = s(&m);
    // a data file without line ends (a device, a binary) is an error, not an endless read
    #[cfg(unix)]
    for cmd in ["eval", "circuit"] {
        fails_with(
            &[cmd, "--model", "toy-ioi", "--data", "/dev/zero"],
            "line 1: longer than 16 MiB",
        );
    }
    fails_with(
        &["logits", "--model", m, "--ids", "1,2,384"],
        "outside the vocabulary",
    );
    let long: Vec<String> = (0..129).map(|i| (i % 300).to_string()).collect();
    fails_with(
        &["logits", "--model", m, "--ids", &long.join(",")],
        "context",
    );
    fails_with(&["logits", "--model", m, "--prompt", ""], "empty");
    fails_with(
        &[
            "attribute",
            "--model",
            m,
            "--prompt",
            "hello",
            "--target",
            "",
        ],
        "target text is empty",
    );
    fails_with(
        &[
            "attribute",
            "--model",
            m,
            "--prompt",
            "hello",
            "--target-id",
            "999",
        ],
        "outside the vocabulary",
    );
    fails_with(
        &[
            "attribute",
            "--model",
            m,
            "--prompt",
            "hello",
            "--position",
            "40",
        ],
        "out of range",
    );
    fails_with(
        &["attribute", "--model", m, "--prompt", "", "--target", " x"],
        "empty",
    );
    fails_with(
        &[
            "attribute",
            "--model",
            m,
            "--prompt",
            "hello",
            "--method",
            "magic",
        ],
        "unknown method",
    );
    fails_with(
        &[
            "attribute",
            "--model",
            m,
            "--prompt",
            "hello",
            "--softmax-temperature",
            "-1",
        ],
        "temperature",
    );
    fails_with(
        &[
            "attribute",
            "--model",
            m,
            "--prompt",
            "hello",
            "--softmax-temperature",
            "NaN",
        ],
        "temperature",
    );
    fails_with(
        &[
            "attribute",
            "--model",
            m,
            "--prompt",
            "hello",
            "--q-scale",
            "-0.5",
        ],
        "q scale",
    );
    fails_with(
        &[
            "attribute",
            "--model",
            m,
            "--prompt",
            "hello",
            "--up-scale",
            "nan",
        ],
        "up scale",
    );
    fails_with(
        &[
            "attribute",
            "--model",
            m,
            "--prompt",
            "hello",
            "--baseline",
            " two words",
        ],
        "exactly one",
    );
}

#[test]
fn logits_json_has_the_documented_shape() {
    let (code, out, err) = gim(&[
        "logits",
        "--model",
        s(&model_dir("qwen2")),
        "--prompt",
        "Paris is the capital",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let fx = fixture("qwen2");
    let case = &fx["cases"][0];
    assert_eq!(v["model_type"], "qwen2");
    assert_eq!(v["token_ids"], case["input_ids"]);
    assert_eq!(v["tokens"].as_array().unwrap().len(), 6);
    let err = rel_err(&f64s(&v["logits"]), &f64s(&case["logits_last"]));
    assert!(err < 1e-4);
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    assert_eq!(top[0]["id"], case["target_token_id"]);
}

#[test]
fn attribute_json_has_the_documented_shape() {
    let fx = fixture("llama");
    let case = &fx["cases"][1];
    let ids: Vec<String> = u32s(&case["input_ids"])
        .iter()
        .map(|i| i.to_string())
        .collect();
    let (code, out, err) = gim(&[
        "attribute",
        "--model",
        s(&model_dir("llama")),
        "--ids",
        &ids.join(","),
        "--target-id",
        &case["target_token_id"].to_string(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for k in [
        "method",
        "model_type",
        "token_ids",
        "tokens",
        "target_id",
        "target",
        "contrast_id",
        "position",
        "baseline_id",
        "attributions",
        "target_logit",
        "settings",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["method"], "gim");
    assert!(v["contrast_id"].is_null());
    assert_eq!(v["settings"]["softmax_temperature"], 2.0);
    let err = rel_err(
        &f64s(&v["attributions"]),
        &f64s(&case["attributions"]["gim"]),
    );
    assert!(err <= 1e-4, "{err}");
}

#[test]
fn batch_jsonl_round_trip() {
    let dir = tmpdir("batch");
    let input = dir.join("in.jsonl");
    std::fs::write(
        &input,
        "{\"prompt\": \"Paris is the capital\"}\n{\"prompt\": \"When Mary and John\", \"target\": \" Mary\", \"contrast\": \" John\"}\n",
    )
    .unwrap();
    let output = dir.join("out.jsonl");
    let (code, _, err) = gim(&[
        "attribute",
        "--model",
        s(&model_dir("phi3")),
        "--batch",
        s(&input),
        "--out",
        s(&output),
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["objective"], "logit-diff");
    assert_eq!(lines[0]["token_ids"].as_array().unwrap().len(), 6);
}

/// `gim … | head`: a reader that goes away early ends the command quietly (no panic message),
/// as other command-line tools do.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gim"))
        .args([
            "logits",
            "--model",
            "toy-ioi",
            "--prompt",
            "When Mary",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gim");
    // close the read end before gim writes its (long) line of logits
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for gim");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "stderr: {err}"
    );
}
