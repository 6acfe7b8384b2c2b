//! The `%gim` magics through the Session API (what the kernel and the REPL call).

mod common;
use common::*;

use gim::session::{Recorder, Session};

fn run(s: &mut Session, line: &str) -> gim::session::MimeBundle {
    let mut out = Recorder::default();
    match s.run_magic(line, &mut out) {
        Ok(Some(b)) => b,
        Ok(None) => panic!("{line}: no result"),
        Err(e) => panic!("{line}: {} / {}", e.message, e.usage),
    }
}

fn fails(s: &mut Session, line: &str, needle: &str) -> gim::session::MagicError {
    let mut out = Recorder::default();
    let e = s
        .run_magic(line, &mut out)
        .err()
        .unwrap_or_else(|| panic!("{line} should fail"));
    assert!(
        e.message.contains(needle),
        "{line}: {:?} lacks {needle:?}",
        e.message
    );
    assert!(!e.message.contains('\n'), "one line: {:?}", e.message);
    assert!(!e.usage.is_empty());
    e
}

#[test]
fn load_attribute_compare_and_friends() {
    let mut s = Session::new();
    let dir = model_dir("llama");
    let b = run(&mut s, &format!("load {} --as tiny", dir.display()));
    assert!(b.plain().contains("llama"), "{}", b.plain());
    assert_eq!(s.current.as_deref(), Some("tiny"));
    let b = run(&mut s, "attribute \"When Mary and John went to the store\" --target \" Mary\" --contrast \" John\" --as a1");
    assert!(b.data.contains_key("text/html"));
    let j = &b.data[gim::session::RESULT_MIME];
    assert_eq!(j["method"], "gim");
    assert_eq!(j["contrast"], " John");
    assert_eq!(j["attributions"].as_array().unwrap().len(), 12);
    // numbers match the library call
    let fx = fixture("llama");
    let case = &fx["cases"][3]; // p1_fixed, target 300
    let b = run(
        &mut s,
        &format!(
            "attribute \"{}\" --target-id 300",
            case["text"].as_str().unwrap()
        ),
    );
    let err = rel_err(
        &f64s(&b.data[gim::session::RESULT_MIME]["attributions"]),
        &f64s(&case["attributions"]["gim"]),
    );
    assert!(err < 1e-4, "{err}");
    // session settings change the method's rules
    run(&mut s, "config softmax_temperature=off q_scale=off k_scale=off v_scale=off gate_scale=off up_scale=off freeze_norm=false");
    let b = run(
        &mut s,
        &format!(
            "attribute \"{}\" --target-id 300",
            case["text"].as_str().unwrap()
        ),
    );
    let err = rel_err(
        &f64s(&b.data[gim::session::RESULT_MIME]["attributions"]),
        &f64s(&case["attributions"]["plain"]),
    );
    assert!(err < 1e-4, "{err}");
    run(&mut s, "config reset");
    let b = run(
        &mut s,
        "compare \"Paris is the capital\" --methods gim,gradient,occlusion",
    );
    assert_eq!(
        b.data[gim::session::RESULT_MIME].as_array().unwrap().len(),
        3
    );
    let b = run(&mut s, "tokens \"Paris is the capital\"");
    assert!(b.plain().starts_with("6 tokens"));
    let b = run(&mut s, "top \"Paris is the capital\" -k 3");
    let rows = b.data[gim::session::RESULT_MIME]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0]["id"],
        case["target_token_id"]
            .as_u64()
            .map(|_| fixture("llama")["cases"][0]["target_token_id"].clone())
            .unwrap()
    );
    let tmp = tmpdir("export").join("a1.json");
    run(&mut s, &format!("export a1 --to {}", tmp.display()));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tmp).unwrap()).unwrap();
    assert_eq!(saved["target"], " Mary");
    let b = run(&mut s, "info");
    assert!(b.plain().contains("tiny: llama"));
    run(&mut s, "models");
    run(
        &mut s,
        &format!("load {} --as g2", model_dir("gemma2").display()),
    );
    run(&mut s, "use tiny");
    assert_eq!(s.current.as_deref(), Some("tiny"));
    run(&mut s, "unload g2");
    assert_eq!(s.models.len(), 1);
}

#[test]
fn mistakes_are_one_line_errors_and_keep_state() {
    let mut s = Session::new();
    fails(&mut s, "attribute \"x\"", "no model is loaded");
    fails(&mut s, "frobnicate", "unknown magic");
    run(&mut s, &format!("load {}", model_dir("gpt2").display()));
    fails(&mut s, "attribute \"x\" --bogus", "--bogus");
    fails(&mut s, "attribute \"x\" --method nope", "unknown method");
    fails(&mut s, "attribute \"\"", "empty");
    fails(&mut s, "attribute \"unclosed", "unclosed");
    fails(&mut s, "use nobody", "no model named");
    fails(&mut s, "load /no/such/dir", "does not exist");
    fails(&mut s, "config softmax_temperature=-2", "temperature");
    fails(&mut s, "config nonsense=1", "unknown setting");
    fails(&mut s, "export nothing --to /tmp/x.json", "no result named");
    // the loaded model survived every mistake
    assert_eq!(s.models.len(), 1);
    assert_eq!(s.settings, Default::default());
    run(&mut s, "attribute \"Paris is\"");
}

#[test]
fn help_completion_and_inspection() {
    let mut s = Session::new();
    let h = run(&mut s, "help");
    for m in [
        "load",
        "attribute",
        "compare",
        "tokens",
        "top",
        "config",
        "export",
        "info",
        "demo",
        "models",
        "use",
        "unload",
    ] {
        assert!(h.plain().contains(m), "help lacks {m}");
    }
    assert!(run(&mut s, "help attribute").plain().contains("--contrast"));
    assert!(run(&mut s, "attribute --help").plain().contains("--target"));
    let c = s.complete("att", 3);
    assert_eq!(c.matches, vec!["attribute"]);
    assert_eq!((c.cursor_start, c.cursor_end), (0, 3));
    let c = s.complete("attribute \"x\" --con", 19);
    assert_eq!(c.matches, vec!["--contrast", "--contrast-id"]);
    let c = s.complete("attribute \"x\" --method integ", 28);
    assert_eq!(c.matches, vec!["integrated-gradients"]);
    let c = s.complete("config soft", 11);
    assert_eq!(c.matches, vec!["softmax_temperature="]);
    let i = s.inspect("attribute \"x\"", 3).unwrap();
    assert!(i.data.contains_key("text/markdown"));
    assert!(i.plain().contains("--target"));
    let i = s.inspect("attribute \"x\" --contrast", 20).unwrap();
    assert!(i.plain().contains("logit(target) − logit(foil)"));
    run(
        &mut s,
        &format!("load {} --as q3", model_dir("qwen3").display()),
    );
    assert_eq!(s.complete("use q", 5).matches, vec!["q3"]);
    assert!(s.inspect("use q3", 5).unwrap().plain().contains("qwen3"));
    let d = run(&mut s, "demo");
    assert!(d.data.contains_key("text/html"));
}

/// Every bundle a magic shows, result or display, in the order shown.
fn shown(s: &mut Session, line: &str) -> Vec<gim::session::MimeBundle> {
    let mut out = Recorder::default();
    let r = s
        .run_magic(line, &mut out)
        .unwrap_or_else(|e| panic!("{line}: {}", e.message));
    // (updates included; an update may blank a progress line, so it may have no text)
    let mut all: Vec<_> = out.displays.into_iter().map(|(b, _)| b).collect();
    all.extend(r);
    for (b, _) in out.updates {
        assert!(!b.data.contains_key("application/json"), "{line}: update");
    }
    all
}

#[test]
fn no_bundle_carries_plain_json_that_jupyterlab_would_show_as_a_tree() {
    // JupyterLab ranks application/json above every other type: a bundle carrying it is shown
    // as a collapsible JSON tree instead of its picture. Results travel as a vendor type.
    let mut s = Session::new();
    let p = "When Mary and John went to the store , John gave a drink to";
    let lines = [
        "load toy-ioi".to_string(),
        "models".into(),
        "config".into(),
        "info".into(),
        "help".into(),
        "help attribute".into(),
        "demo".into(),
        format!("tokens \"{p}\""),
        format!("top \"{p}\" -k 3"),
        format!("attribute \"{p}\" --target \" Mary\" --contrast \" John\" --as a"),
        format!("compare \"{p}\" --target \" Mary\" --methods gim,gradient"),
        format!("heads --clean \"{p}\" --corrupt \"When Mary and John went to the store , Kate gave a drink to\" --target \" Mary\" --foil \" John\""),
    ];
    let mut results = 0;
    for l in &lines {
        for b in shown(&mut s, l) {
            assert!(
                !b.data.contains_key("application/json"),
                "{l}: carries application/json"
            );
            assert!(!b.plain().is_empty(), "{l}: no text/plain");
            results += b.result().is_some() as usize;
        }
    }
    assert!(
        results >= 6,
        "results kept under the vendor type: {results}"
    );
    // `--as` and export read the vendor-typed result
    assert!(s.vars["a"]["target"].as_str().unwrap().contains("Mary"));
}

#[test]
fn help_is_markdown_with_one_line_per_magic() {
    let mut s = Session::new();
    let b = run(&mut s, "help");
    let md = b.data["text/markdown"].as_str().unwrap();
    assert!(
        !md.contains("```"),
        "the summary is prose, not a code block: {md}"
    );
    let names: Vec<&str> = gim::session::magics::all().iter().map(|m| m.name).collect();
    for n in &names {
        let line = format!("- `{n}` — ");
        assert_eq!(md.matches(&line).count(), 1, "{n}: {md}");
    }
    assert_eq!(
        md.lines().filter(|l| l.starts_with("- `")).count(),
        names.len()
    );
    let b = run(&mut s, "help attribute");
    let md = b.data["text/markdown"].as_str().unwrap();
    assert!(md.starts_with("### `%gim attribute`"), "{md}");
    assert!(md.contains("- `--target <TARGET>` — "), "{md}");
    assert!(b.plain().contains("--target"));
}

#[test]
fn completion_and_inspection_take_any_text_at_any_cursor() {
    let corpus: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/hostile_corpus.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut s = Session::new();
    run(&mut s, "load toy-ioi");
    let mut n = 0;
    for c in &corpus {
        for line in [
            format!("load {c}"),
            c.to_string(),
            format!("attribute \"{c}\" --method {c}"),
        ] {
            // every byte offset, boundaries or not: the session must clamp, never slice mid-char
            let step = (line.len() / 200).max(1);
            for cur in (0..=line.len() + 2).step_by(step) {
                let comp = s.complete(&line, cur);
                assert!(comp.cursor_start <= comp.cursor_end && comp.cursor_end <= line.len());
                assert!(line.is_char_boundary(comp.cursor_start));
                let _ = s.inspect(&line, cur);
                n += 1;
            }
            let mut out = Recorder::default();
            if let Err(e) = s.run_magic(&line, &mut out) {
                assert!(!e.message.contains('\n'), "{line}: {}", e.message);
            }
        }
    }
    assert!(n > 3000, "{n}");
    assert!(s.models.contains_key("toy-ioi"));
    // the case from the report: a no-break space then a letter after `load`
    let c = s.complete("load\u{a0}t", "load\u{a0}t".len());
    assert_eq!(c.cursor_start, "load\u{a0}".len());
}
