//! Real tasks (`gim tasks`): the IOI and greater-than generators on SmolLM2's tokenizer (single-
//! token names, equal token lengths, the right target and foil per template, seeded
//! determinism), the model filter on SmolLM2, and the JSONL feeding `gim eval`.

use std::collections::BTreeSet;
use std::process::Command;

use candle_core::{DType, IndexOp};
use gim::model::Positions;
use gim::tasks::{
    build, candidates, continuation_id, greater_than, ioi, IoiCorruption, TaskKind, TaskOpts,
};
use gim::LoadedModel;

fn smollm2() -> LoadedModel {
    gim::load("smollm2-135m", &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn opts(n: usize, seed: u64, corruption: IoiCorruption) -> TaskOpts {
    TaskOpts {
        n,
        seed,
        corruption,
        ..Default::default()
    }
}

fn len(m: &LoadedModel, s: &str) -> usize {
    m.tok.encode(s, true).unwrap().len()
}

/// Whole-word occurrences of `name` in `text`.
fn count(text: &str, name: &str) -> usize {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| *w == name)
        .count()
}

fn last_logits(m: &LoadedModel, text: &str) -> Vec<f64> {
    let ids = m.tok.encode(text, true).unwrap();
    m.model
        .logits(&[ids], Positions::Last)
        .unwrap()
        .i((0, 0))
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn ioi_prompts_are_well_formed_for_smollm2() {
    let m = smollm2();
    let names = ioi::single_token_names(&m.tok).unwrap();
    // measured: 96 of the 100 built-in names are one SmolLM2 token with a leading space
    assert_eq!(names.len(), 96, "{names:?}");
    for n in &names {
        assert_eq!(
            m.tok.encode(&format!(" {n}"), false).unwrap().len(),
            1,
            "{n}"
        );
    }
    for corruption in [IoiCorruption::Abc, IoiCorruption::Subject] {
        let (c, stats) = candidates(&m.tok, TaskKind::Ioi, &opts(200, 0, corruption)).unwrap();
        assert_eq!(stats.generated, 200);
        assert_eq!(c.len() + stats.skipped_length, 200);
        assert_eq!(c.len(), 200, "single-token names keep every length equal");
        let templates: BTreeSet<usize> = c.iter().map(|x| x.template).collect();
        assert!(templates.len() >= 10, "{templates:?}");
        let orders: BTreeSet<&str> = c.iter().filter_map(|x| x.order.as_deref()).collect();
        assert_eq!(orders.len(), 2, "both ABBA and BABA");
        for x in &c {
            assert_eq!(len(&m, &x.clean), len(&m, &x.corrupt), "{x:?}");
            let (io, s) = (x.target.trim_start(), x.foil.trim_start());
            assert_eq!(x.target, format!(" {io}"));
            assert_eq!(x.foil, format!(" {s}"));
            assert_eq!(x.io.as_deref(), Some(x.target.as_str()));
            assert_eq!(x.s.as_deref(), Some(x.foil.as_str()));
            assert_ne!(io, s);
            assert!(names.contains(&io) && names.contains(&s));
            // the clean prompt is the template with the pair in its order and the subject as giver
            let (first, second) = match x.order.as_deref() {
                Some("ABBA") => (io, s),
                _ => (s, io),
            };
            assert_eq!(
                x.clean,
                ioi::fill(ioi::TEMPLATES[x.template], first, second, s)
            );
            assert_eq!(
                (count(&x.clean, io), count(&x.clean, s)),
                (1, 2),
                "{}",
                x.clean
            );
            // target and foil are the single tokens that continue the clean prompt
            let t = continuation_id(&m.tok, &x.clean, &x.target).unwrap();
            let f = continuation_id(&m.tok, &x.clean, &x.foil).unwrap();
            assert!(t.is_some() && f.is_some() && t != f);
            match corruption {
                IoiCorruption::Abc => {
                    let cn = x.c.as_deref().unwrap().trim_start();
                    assert!(cn != io && cn != s);
                    assert_eq!(
                        x.corrupt,
                        ioi::fill(ioi::TEMPLATES[x.template], first, second, cn)
                    );
                    assert_eq!(
                        (
                            count(&x.corrupt, io),
                            count(&x.corrupt, s),
                            count(&x.corrupt, cn)
                        ),
                        (1, 1, 1),
                        "{}",
                        x.corrupt
                    );
                }
                IoiCorruption::Subject => {
                    assert!(x.c.is_none());
                    assert_eq!((count(&x.corrupt, io), count(&x.corrupt, s)), (2, 1));
                }
            }
        }
    }
}

#[test]
fn generators_are_deterministic_under_the_seed() {
    let m = smollm2();
    for kind in [TaskKind::Ioi, TaskKind::GreaterThan] {
        let a = candidates(&m.tok, kind, &opts(50, 7, IoiCorruption::Abc)).unwrap();
        let b = candidates(&m.tok, kind, &opts(50, 7, IoiCorruption::Abc)).unwrap();
        let c = candidates(&m.tok, kind, &opts(50, 8, IoiCorruption::Abc)).unwrap();
        assert_eq!(a, b, "{kind:?}");
        assert_ne!(a.0, c.0, "{kind:?}: another seed, other prompts");
    }
    // the corruption changes only the corrupt prompt
    let abc = candidates(&m.tok, TaskKind::Ioi, &opts(30, 1, IoiCorruption::Abc))
        .unwrap()
        .0;
    let sub = candidates(&m.tok, TaskKind::Ioi, &opts(30, 1, IoiCorruption::Subject))
        .unwrap()
        .0;
    for (x, y) in abc.iter().zip(&sub) {
        assert_eq!(
            (&x.clean, &x.target, &x.foil),
            (&y.clean, &y.target, &y.foil)
        );
        assert_ne!(x.corrupt, y.corrupt);
    }
}

#[test]
fn greater_than_predicts_the_tens_digit_on_smollm2() {
    let m = smollm2();
    let (c, stats) = candidates(
        &m.tok,
        TaskKind::GreaterThan,
        &opts(200, 0, IoiCorruption::Abc),
    )
    .unwrap();
    assert_eq!(c.len(), 200, "{stats:?}");
    let templates: BTreeSet<usize> = c.iter().map(|x| x.template).collect();
    assert!(templates.len() >= 10);
    for x in &c {
        let year = x.year.unwrap();
        let (century, tens) = (year / 100, year / 10 % 10);
        assert!((1..=8).contains(&tens) && (11..=17).contains(&century));
        assert_eq!(
            x.clean,
            greater_than::prompt(greater_than::NOUNS[x.template], century, year % 100)
        );
        assert_eq!(
            x.corrupt,
            greater_than::prompt(greater_than::NOUNS[x.template], century, 1)
        );
        assert!(x.clean.ends_with(&format!(" to the year {century}")));
        // SmolLM2 splits numbers into digits: the next token is the tens digit
        assert_eq!(x.target, (tens + 1).to_string());
        assert_eq!(x.foil, (tens - 1).to_string());
        assert_eq!(len(&m, &x.clean), len(&m, &x.corrupt));
        assert!(continuation_id(&m.tok, &x.clean, &x.target)
            .unwrap()
            .is_some());
    }
}

#[test]
fn the_model_filter_keeps_what_smollm2_gets_right() {
    let m = smollm2();
    let set = build(&m, TaskKind::Ioi, &opts(40, 0, IoiCorruption::Abc)).unwrap();
    // measured: 194 of 200 (seed 0); 40 prompts: at least 36
    assert!(set.kept >= 36 && set.kept <= 40, "{}", set.summary());
    assert_eq!(set.kept, set.examples.len());
    assert!(set.summary().contains(&format!("kept {} of 40", set.kept)));
    let all = candidates(&m.tok, TaskKind::Ioi, &opts(40, 0, IoiCorruption::Abc))
        .unwrap()
        .0;
    let mut kept = set.examples.iter().peekable();
    for c in &all {
        // brute force: the full logits of each prompt, one at a time
        let l = last_logits(&m, &c.clean);
        let t = continuation_id(&m.tok, &c.clean, &c.target)
            .unwrap()
            .unwrap() as usize;
        let f = continuation_id(&m.tok, &c.clean, &c.foil).unwrap().unwrap() as usize;
        let diff = l[t] - l[f];
        match kept.peek() {
            Some(e) if e.clean == c.clean => {
                assert!(diff > 0.0);
                assert!(
                    (e.logit_diff - diff).abs() < 1e-3,
                    "{} vs {diff}",
                    e.logit_diff
                );
                let lc = last_logits(&m, &c.corrupt);
                assert!((e.corrupt_logit_diff - (lc[t] - lc[f])).abs() < 1e-3);
                assert_eq!(e.n_tokens, len(&m, &c.clean));
                kept.next();
            }
            _ => assert!(diff <= 0.0, "{} dropped but right by {diff}", c.clean),
        }
    }
    assert!(kept.next().is_none());
    // the ABC corruption takes most of the logit difference away
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let clean = mean(set.examples.iter().map(|e| e.logit_diff).collect());
    let corrupt = mean(set.examples.iter().map(|e| e.corrupt_logit_diff).collect());
    assert!(clean > 2.0 && corrupt < clean / 2.0, "{clean} {corrupt}");
    // --top1 keeps a subset
    let top1 = build(
        &m,
        TaskKind::Ioi,
        &TaskOpts {
            top1: true,
            ..opts(40, 0, IoiCorruption::Abc)
        },
    )
    .unwrap();
    assert!(top1.kept <= set.kept && top1.criterion.contains("top-1"));
    for e in &top1.examples {
        let l = last_logits(&m, &e.clean);
        let t = continuation_id(&m.tok, &e.clean, &e.target)
            .unwrap()
            .unwrap() as usize;
        let top = (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
        assert_eq!(top, t, "{}", e.clean);
    }
    // greater-than: measured 200 of 200 right
    let gt = build(&m, TaskKind::GreaterThan, &opts(40, 0, IoiCorruption::Abc)).unwrap();
    assert!(gt.kept >= 36, "{}", gt.summary());
    assert!(gt.examples.iter().all(|e| e.logit_diff > 0.0));
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

#[test]
fn cli_tasks_output_feeds_gim_eval() {
    let (code, stdout, err) = gim(&[
        "tasks",
        "ioi",
        "--model",
        "smollm2-135m",
        "--n",
        "20",
        "--seed",
        "3",
        "--corrupt",
        "subject",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        err.contains(&format!("kept {} of 20", lines.len())),
        "{err}"
    );
    assert!(lines.len() >= 16, "{err}");
    for l in &lines {
        assert_eq!(l["task"], "ioi");
        assert_eq!(l["corruption"], "subject");
        assert!(l["logit_diff"].as_f64().unwrap() > 0.0);
        for k in ["clean", "corrupt", "target", "foil", "io", "s", "order"] {
            assert!(l[k].is_string(), "{k}: {l}");
        }
        assert!(l["target"].as_str().unwrap().starts_with(' '));
    }
    let dir = std::env::temp_dir().join(format!("gim-tasks-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("ioi.jsonl");
    std::fs::write(&data, &stdout).unwrap();
    // the foil is the contrast by default: logit-diff, and f(x) is the generator's logit_diff
    // (one run: the summary as JSON, the per-example lines to --out)
    let out_jsonl = dir.join("res.jsonl");
    let (code, out, err) = gim(&[
        "eval",
        "--model",
        "smollm2-135m",
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "1",
        "--methods",
        "random",
        "--max-steps",
        "3",
        "--json",
        "--out",
        out_jsonl.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["metric"], "logit-diff");
    assert_eq!(v["n_done"], 1);
    let r: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&out_jsonl).unwrap().trim()).unwrap();
    let want = lines[0]["logit_diff"].as_f64().unwrap();
    assert!(
        (r["target_logit"].as_f64().unwrap() - want).abs() < 1e-3,
        "{r} vs {want}"
    );
    // bad input is one line
    for (args, needle) in [
        (
            vec!["tasks", "ioi", "--model", "smollm2-135m", "--n", "0"],
            "--n",
        ),
        (
            vec![
                "tasks",
                "ioi",
                "--model",
                "smollm2-135m",
                "--out",
                "/nonexistent/x.jsonl",
                "--n",
                "2",
            ],
            "cannot write",
        ),
    ] {
        let (code, _, err) = gim(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error:") && err.contains(needle) && err.trim().lines().count() == 1,
            "{err}"
        );
    }
}
