//! Faithfulness evaluation: the batched metrics against a one-prompt-at-a-time loop, their
//! direction on a model with a known mechanism, the `gim eval` binary and the `%gim eval` magic.

mod common;
use common::*;

use std::process::Command;

use candle_core::{DType, IndexOp};
use gim::attribution::{attribute, AttributeRequest, Attribution, Method, TargetSpec};
use gim::eval::{
    evaluate, faithfulness, resolve_metric, EvalExample, FaithfulnessOpts, Metric, Stat,
    SUFFICIENCY_RATIOS,
};
use gim::model::Positions;
use gim::session::{Recorder, Session};
use gim::{load, LoadOpts, LoadedModel};

fn fixture_model(dtype: DType) -> LoadedModel {
    let opts = LoadOpts {
        dtype,
        ..Default::default()
    };
    load(model_dir("llama").to_str().unwrap(), &opts).expect("load llama fixture")
}

/// f for one prompt, straight from the full logits.
fn f_one(m: &LoadedModel, ids: &[u32], a: &Attribution) -> f64 {
    let l = m.model.logits(&[ids.to_vec()], Positions::Last).unwrap();
    let l: Vec<f64> = l
        .i((0, 0))
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    l[a.target_id as usize] - a.contrast_id.map(|c| l[c as usize]).unwrap_or(0.0)
}

/// The metrics written out as plainly as possible, one forward pass per patched prompt.
fn naive(m: &LoadedModel, a: &Attribution, base: u32) -> (f64, f64) {
    let (c, s, _) = drops_by_hand(a, base, &|ids| f_one(m, ids, a));
    (c, s)
}

/// Comprehensiveness, sufficiency and f(x), one `score` call per patched prompt: the top-50
/// prefix replacements and the sufficiency ratios, normalised by |f(x)|.
fn drops_by_hand(a: &Attribution, base: u32, score: &dyn Fn(&[u32]) -> f64) -> (f64, f64, f64) {
    let n = a.token_ids.len();
    let mut cand: Vec<usize> = (1..n - 1).collect();
    cand.sort_by(|&i, &j| a.attributions[j].partial_cmp(&a.attributions[i]).unwrap());
    let f0 = score(&a.token_ids);
    let mut comp = Vec::new();
    let mut ids = a.token_ids.clone();
    for &p in cand.iter().take(50) {
        ids[p] = base;
        comp.push(f0 - score(&ids));
    }
    let mut suff = Vec::new();
    for r in SUFFICIENCY_RATIOS {
        let q = (r * cand.len() as f64).floor() as usize;
        let mut ids = a.token_ids.clone();
        for &p in &cand[cand.len() - q..] {
            ids[p] = base;
        }
        suff.push(f0 - score(&ids));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (mean(&comp) / f0.abs(), mean(&suff) / f0.abs(), f0)
}

#[test]
fn batched_metrics_equal_a_one_by_one_loop() {
    let m = fixture_model(DType::F64);
    let ids = m
        .tok
        .encode(
            "When Mary and John went to the store, John gave a drink to",
            true,
        )
        .unwrap();
    for (method, contrast) in [
        (Method::Gim, None),
        (Method::Occlusion, Some(TargetSpec::Text(" John".into()))),
        (Method::Random, None),
    ] {
        let mut req = AttributeRequest::new(ids.clone());
        req.method = method;
        req.contrast = contrast;
        let a = attribute(&m, &req).unwrap();
        let base = a.baseline_id.unwrap();
        // small chunks so the batching is exercised across several forward passes
        let opts = FaithfulnessOpts {
            batch_size: 3,
            ..Default::default()
        };
        let f = faithfulness(&m, &a, None, &opts).unwrap();
        let (c, s) = naive(&m, &a, base);
        assert_eq!(f.n_candidates, a.token_ids.len() - 2);
        assert_eq!(f.comprehensiveness_drops.len(), f.n_candidates.min(50));
        assert!(
            (f.comprehensiveness - c).abs() < 1e-9,
            "{method:?}: {} vs {c}",
            f.comprehensiveness
        );
        assert!(
            (f.sufficiency - s).abs() < 1e-9,
            "{method:?}: {} vs {s}",
            f.sufficiency
        );
        assert!((f.target_logit - a.target_logit).abs() < 1e-9);
    }
}

#[test]
fn ranking_the_known_important_token_first_scores_higher() {
    // toy-ioi: the indirect object's name is what the model copies.
    let m = load("toy-ioi", &LoadOpts::default()).unwrap();
    let prompt = "Since Mary and John were working at the park , John passed a ball to";
    let ids = m.tok.encode(prompt, true).unwrap();
    let mut req = AttributeRequest::new(ids);
    req.target = TargetSpec::Text(" Mary".into());
    req.method = Method::Random;
    let mut a = attribute(&m, &req).unwrap();
    let io = a.tokens.iter().position(|t| t.trim() == "Mary").unwrap();
    let opts = FaithfulnessOpts::default();
    a.attributions = vec![0.0; a.token_ids.len()];
    a.attributions[io] = 1.0;
    let best = faithfulness(&m, &a, None, &opts).unwrap();
    a.attributions[io] = -1.0;
    let worst = faithfulness(&m, &a, None, &opts).unwrap();
    assert!(
        best.comprehensiveness > worst.comprehensiveness,
        "{} vs {}",
        best.comprehensiveness,
        worst.comprehensiveness
    );
    assert!(best.comprehensiveness_drops[0] > 0.0);
    assert!(
        best.sufficiency < worst.sufficiency,
        "{} vs {}",
        best.sufficiency,
        worst.sufficiency
    );
}

#[test]
fn evaluate_gives_finite_scores_and_ci() {
    let m = fixture_model(DType::F32);
    let ex: Vec<EvalExample> = ["The capital of France is", "One two three four five six"]
        .iter()
        .map(|p| EvalExample {
            prompt: p.to_string(),
            target: TargetSpec::Argmax,
            contrast: None,
        })
        .collect();
    let mut seen = 0;
    let run = evaluate(
        &m,
        &ex,
        &[Method::Random, Method::Gradient],
        &AttributeRequest::new(vec![]),
        &FaithfulnessOpts::default(),
        |rs| {
            seen += rs.len();
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(seen, 4);
    assert_eq!(run.n_done, 2);
    assert!(!run.interrupted);
    assert_eq!(run.summary.len(), 2);
    assert_eq!(run.summary[0].method, "random");
    for r in &run.results {
        assert!(
            r.comprehensiveness.is_finite() && r.sufficiency.is_finite(),
            "{r:?}"
        );
    }
    assert!(run.summary[0].comprehensiveness.ci95.is_finite());
    let s = Stat::of([1.0, 2.0, 3.0, f64::NAN]);
    assert_eq!(s.n, 3);
    assert!((s.mean - 2.0).abs() < 1e-12);
    assert!((s.ci95 - 1.96 / 3f64.sqrt()).abs() < 1e-12);
}

fn gim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gim"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run gim");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gim-eval-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn cli_eval_writes_jsonl_png_and_a_table() {
    let data = tmp("three.jsonl");
    std::fs::write(
        &data,
        concat!(
            r#"{"prompt":"When Mary and John went to the store , John gave a drink to","target":" Mary"}"#, "\n",
            r#"{"prompt":"As Tom and Kate walked to the park , Kate offered a book to","target":" Tom","contrast":" Kate"}"#, "\n\n",
            r#"{"clean":"Since Emma and Paul were working at the office , Paul passed a key to","io":" Emma","s":" Paul"}"#, "\n",
        ),
    )
    .unwrap();
    let (out, png) = (tmp("out.jsonl"), tmp("chart.png"));
    let (code, stdout, err) = gim(&[
        "eval",
        "--model",
        "toy-ioi",
        "--data",
        data.to_str().unwrap(),
        "--methods",
        "gim,random",
        "--out",
        out.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("comprehensiveness") && stdout.contains("gim") && stdout.contains("random"),
        "{stdout}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["method"], "gim");
    assert_eq!(lines[5]["example"], 2);
    for l in &lines {
        assert!(
            l["comprehensiveness"].is_f64()
                && l["sufficiency"].is_f64()
                && l["target_logit"].is_f64()
        );
    }
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");

    // the IOI format with the subject as contrast, a filter and a limit
    let (code, stdout, err) = gim(&[
        "eval",
        "--model",
        "toy-ioi",
        "--data",
        "models/toy-ioi/ioi_prompts.jsonl",
        "--filter",
        "heldout_template=true",
        "--contrast-field",
        "s",
        "--limit",
        "2",
        "--methods",
        "occlusion",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["n_done"], 2);
    assert!(v["summary"][0]["comprehensiveness"]["mean"].is_f64());
}

#[test]
fn cli_eval_bad_input_is_one_line() {
    let empty = tmp("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let bad = tmp("bad.jsonl");
    std::fs::write(&bad, "{\"target\":\" Mary\"}\n").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--data", "/nonexistent/prompts.jsonl"], "cannot open"),
        (
            &[
                "--data",
                "models/toy-ioi/ioi_prompts.jsonl",
                "--methods",
                "gim,magic",
            ],
            "unknown method",
        ),
        (&["--data", empty.to_str().unwrap()], "no examples"),
        (&["--data", bad.to_str().unwrap()], "line 1"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["eval", "--model", "toy-ioi"];
        args.extend_from_slice(extra);
        let (code, _, err) = gim(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.starts_with("error:") && err.contains(needle), "{err}");
    }
}

#[test]
fn eval_magic_shows_table_chart_and_json() {
    let mut s = Session::new();
    let mut out = Recorder::default();
    s.run_magic("load toy-ioi", &mut out)
        .map_err(|e| e.message)
        .unwrap();
    let line = "eval --data models/toy-ioi/ioi_prompts.jsonl --filter heldout_template=true --limit 2 --methods gim,random";
    let b = s
        .run_magic(line, &mut out)
        .map_err(|e| e.message)
        .unwrap()
        .unwrap();
    for k in [
        "text/plain",
        "text/html",
        "image/png",
        "image/svg+xml",
        gim::session::RESULT_MIME,
    ] {
        assert!(b.data.contains_key(k), "{k}");
    }
    assert!(b.plain().contains("sufficiency"));
    assert_eq!(b.data[gim::session::RESULT_MIME]["n_done"], 2);
    assert_eq!(
        b.data[gim::session::RESULT_MIME]["summary"][1]["method"],
        "random"
    );
    let e = s
        .run_magic("eval --data /nonexistent.jsonl", &mut out)
        .err()
        .unwrap();
    assert!(e.message.contains("cannot open") && !e.message.contains('\n'));
}

/// Full last-position logits of `ids`.
fn logits_of(m: &LoadedModel, ids: &[u32]) -> Vec<f64> {
    m.model
        .logits(&[ids.to_vec()], Positions::Last)
        .unwrap()
        .i((0, 0))
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Comprehensiveness and sufficiency by hand for a score `f` of the full logits.
fn by_hand(m: &LoadedModel, a: &Attribution, f: &dyn Fn(&[f64]) -> f64) -> (f64, f64, f64) {
    drops_by_hand(a, a.baseline_id.unwrap(), &|ids| f(&logits_of(m, ids)))
}

/// A score of the full logits.
type Score = dyn Fn(&[f64]) -> f64;

#[test]
fn the_metric_decides_what_drops_are_measured() {
    let m = fixture_model(DType::F64);
    let prompt = "When Mary and John went to the store, John gave a drink to";
    let ids = m.tok.encode(prompt, true).unwrap();
    let t = m.tok.encode(" Mary", false).unwrap()[0] as usize;
    let c = m.tok.encode(" John", false).unwrap()[0] as usize;
    let ex = vec![EvalExample {
        prompt: prompt.into(),
        target: TargetSpec::Text(" Mary".into()),
        contrast: Some(TargetSpec::Text(" John".into())),
    }];
    let logit = move |l: &[f64]| l[t];
    let diff = move |l: &[f64]| l[t] - l[c];
    let log_prob = move |l: &[f64]| {
        let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        l[t] - max - l.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
    };
    let cases: [(Option<Metric>, Metric, &Score); 4] = [
        (None, Metric::LogitDiff, &diff),
        (Some(Metric::LogitDiff), Metric::LogitDiff, &diff),
        (Some(Metric::Logit), Metric::Logit, &logit),
        (Some(Metric::LogProb), Metric::LogProb, &log_prob),
    ];
    let mut comps = Vec::new();
    for (asked, metric, f) in cases {
        let opts = FaithfulnessOpts {
            metric: asked,
            ..Default::default()
        };
        let run = evaluate(
            &m,
            &ex,
            &[Method::Random],
            &AttributeRequest::new(vec![]),
            &opts,
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(run.metric, metric);
        assert_eq!(
            run.note.is_some(),
            metric != Metric::LogitDiff,
            "{:?}",
            run.note
        );
        let r = &run.results[0];
        assert_eq!(r.metric, metric);
        // the same random ranking, re-made by hand; f from the full logits of each patched prompt
        let mut req = AttributeRequest::new(ids.clone());
        req.method = Method::Random;
        let a = attribute(&m, &req).unwrap();
        let (comp, suff, f0) = by_hand(&m, &a, f);
        assert!(
            (r.target_logit - f0).abs() < 1e-9,
            "{metric}: {} vs {f0}",
            r.target_logit
        );
        assert!(
            (r.comprehensiveness - comp).abs() < 1e-9,
            "{metric}: {} vs {comp}",
            r.comprehensiveness
        );
        assert!(
            (r.sufficiency - suff).abs() < 1e-9,
            "{metric}: {} vs {suff}",
            r.sufficiency
        );
        comps.push(r.comprehensiveness);
    }
    // the metric changes the numbers: logit, logit-diff and log-prob disagree
    assert!(
        (comps[1] - comps[2]).abs() > 1e-6 && (comps[2] - comps[3]).abs() > 1e-6,
        "{comps:?}"
    );
    assert_eq!(comps[0], comps[1]);
}

#[test]
fn the_default_metric_follows_the_foils() {
    let ex = |foil: bool| EvalExample {
        prompt: "a b c".into(),
        target: TargetSpec::Text(" Mary".into()),
        contrast: foil.then(|| TargetSpec::Text(" John".into())),
    };
    assert_eq!(
        resolve_metric(&[ex(true), ex(true)], None).unwrap(),
        (Metric::LogitDiff, None)
    );
    assert_eq!(
        resolve_metric(&[ex(false)], None).unwrap(),
        (Metric::Logit, None)
    );
    let (m, note) = resolve_metric(&[ex(true), ex(false)], None).unwrap();
    assert_eq!(m, Metric::Logit);
    assert!(note.unwrap().starts_with("1 of 2 examples have a foil"));
    assert_eq!(
        resolve_metric(&[ex(true)], Some(Metric::LogProb))
            .unwrap()
            .0,
        Metric::LogProb
    );
    let e = resolve_metric(&[ex(true), ex(false)], Some(Metric::LogitDiff)).unwrap_err();
    assert!(e.to_string().contains("1 of 2 have none") && e.to_string().contains("--metric logit"));
}

#[test]
fn cli_eval_shows_the_metric() {
    let data = tmp("foils.jsonl");
    std::fs::write(
        &data,
        concat!(
            r#"{"clean":"When Mary and John went to the store , John gave a drink to","target":" Mary","foil":" John"}"#, "\n",
            r#"{"clean":"As Tom and Kate walked to the park , Kate offered a book to","target":" Tom","foil":" Kate"}"#, "\n",
        ),
    )
    .unwrap();
    let d = data.to_str().unwrap();
    let common = [
        "eval",
        "--model",
        "toy-ioi",
        "--data",
        d,
        "--methods",
        "random",
    ];
    let (code, stdout, err) = gim(&common);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("metric logit-diff") && stdout.contains("f = logit(target) − logit(foil)"),
        "{stdout}"
    );
    let mut fx = Vec::new();
    for metric in ["logit", "logit-diff", "log-prob"] {
        let mut args = common.to_vec();
        args.extend(["--metric", metric, "--json"]);
        let (code, stdout, err) = gim(&args);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["metric"], metric);
        fx.push(
            v["summary"][0]["comprehensiveness"]["mean"]
                .as_f64()
                .unwrap(),
        );
    }
    assert!(fx[0] != fx[1] && fx[1] != fx[2], "{fx:?}");
    // logit-diff without foils is a one-line error naming the fix
    let mut args = vec![
        "eval",
        "--model",
        "toy-ioi",
        "--data",
        "models/toy-ioi/ioi_prompts.jsonl",
    ];
    args.extend([
        "--limit",
        "2",
        "--methods",
        "random",
        "--metric",
        "logit-diff",
    ]);
    let (code, _, err) = gim(&args);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error:")
            && err.contains("--contrast-field")
            && err.trim().lines().count() == 1,
        "{err}"
    );
}
