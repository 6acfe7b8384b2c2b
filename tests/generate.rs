//! Greedy generation with the key/value cache equals greedy generation by full forwards, on every
//! family (Gemma-2's 16-token sliding window crossed), in f64 and f32; and the magic streams.

mod common;
use common::*;

use candle_core::DType;
use gim::generate::{generate, generate_uncached, Stop};
use gim::loader::{load, LoadOpts};
use gim::session::{Recorder, Session};

fn loaded(arch: &str, dtype: DType) -> gim::loader::LoadedModel {
    let opts = LoadOpts {
        dtype,
        ..Default::default()
    };
    load(model_dir(arch).to_str().unwrap(), &opts).unwrap()
}

#[test]
fn cached_generation_equals_full_forwards_on_every_family() {
    let mut varied = 0;
    for arch in ARCHS {
        for dtype in [DType::F64, DType::F32] {
            let m = loaded(arch, dtype);
            let prompt = m.tok.encode("Paris is the capital of", true).unwrap();
            let n = 30; // prompt + 30 > 16: the sliding window is crossed
            let mut streamed = Vec::new();
            let (ids, stop) = generate(&m, &prompt, n, &[], |so_far| {
                streamed.push(so_far.len());
                Ok(())
            })
            .unwrap();
            assert_eq!(stop, Stop::MaxTokens);
            let reference = generate_uncached(&m, &prompt, n).unwrap();
            assert_eq!(ids, reference, "{arch} {dtype:?}");
            assert_eq!(
                streamed,
                (1..=n).collect::<Vec<_>>(),
                "{arch}: one call per token"
            );
            let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
            varied += (distinct.len() > 1) as usize;
        }
    }
    // Constant continuations would not show a stale cache; most random models do vary (gemma's
    // repeats one token).
    assert!(
        varied >= 12,
        "only {varied} of 16 runs produced more than one distinct token"
    );
}

#[test]
fn generation_stops_at_a_stop_token_and_is_deterministic() {
    let m = loaded("llama", DType::F32);
    let prompt = m.tok.encode("Paris is the capital of", true).unwrap();
    let (free, _) = generate(&m, &prompt, 12, &[], |_| Ok(())).unwrap();
    let stop_at = free[5];
    let first = free.iter().position(|&t| t == stop_at).unwrap();
    let (ids, stop) = generate(&m, &prompt, 12, &[stop_at], |_| Ok(())).unwrap();
    assert_eq!(stop, Stop::Eos);
    assert_eq!(ids, free[..=first].to_vec());
    let (again, _) = generate(&m, &prompt, 12, &[], |_| Ok(())).unwrap();
    assert_eq!(again, free);
}

#[test]
fn the_magic_streams_into_one_display_and_keeps_the_result() {
    let mut s = Session::new();
    let mut out = Recorder::default();
    s.run_magic(
        &format!("load {} --as tiny", model_dir("llama").display()),
        &mut out,
    )
    .unwrap();
    let mut out = Recorder::default();
    let r = s
        .run_magic(
            "generate \"Paris is the capital of\" --max-tokens 8 --as g",
            &mut out,
        )
        .unwrap();
    assert!(r.is_none(), "the streamed display is the output");
    assert_eq!(out.displays.len(), 1);
    let id = out.displays[0].1.clone().unwrap();
    assert_eq!(
        out.updates.len(),
        9,
        "one update per token, then the final one"
    );
    assert!(out.updates.iter().all(|(_, i)| *i == id));
    let g = &s.vars["g"];
    assert_eq!(g["ids"].as_array().unwrap().len(), 8);
    let last = &out.updates.last().unwrap().0;
    assert_eq!(last.result().unwrap()["ids"], g["ids"]);
    assert!(last.plain().starts_with("Paris is the capital of"));
    // the same ids as the library's uncached reference
    let m = &s.models["tiny"];
    let prompt = m.tok.encode("Paris is the capital of", true).unwrap();
    let reference = generate_uncached(m, &prompt, 8).unwrap();
    let ids: Vec<u32> = g["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, reference);
    // a model without a chat template says so in one line
    let e = s
        .run_magic("generate \"hi\" --chat", &mut Recorder::default())
        .unwrap_err();
    assert!(e.message.contains("chat template"), "{}", e.message);
}

#[test]
fn attribute_can_target_the_models_own_continuation() {
    let mut s = Session::new();
    s.run_magic(
        &format!("load {} --as tiny", model_dir("llama").display()),
        &mut Recorder::default(),
    )
    .unwrap();
    let m = &s.models["tiny"];
    let text = "Paris is the capital of";
    let prompt = m.tok.encode(text, true).unwrap();
    let gen = generate_uncached(m, &prompt, 3).unwrap();
    let run = |s: &mut Session, line: &str| {
        s.run_magic(line, &mut Recorder::default())
            .unwrap_or_else(|e| panic!("{line}: {}", e.message))
            .unwrap()
            .result()
            .cloned()
            .unwrap()
    };
    // one token: the same as naming its id
    let one = run(
        &mut s,
        &format!("attribute \"{text}\" --target-generated 1"),
    );
    let by_id = run(
        &mut s,
        &format!("attribute \"{text}\" --target-id {}", gen[0]),
    );
    assert_eq!(one["attributions"], by_id["attributions"]);
    assert_eq!(one["target_id"], gen[0]);
    // three tokens: teacher-forced, the first two generated tokens appended to the input
    let three = run(
        &mut s,
        &format!("attribute \"{text}\" --target-generated 3"),
    );
    let ids: Vec<u32> = three["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let mut want = prompt.clone();
    want.extend_from_slice(&gen[..2]);
    assert_eq!(ids, want);
    assert_eq!(three["objective"], "log-prob");
    let e = s
        .run_magic(
            &format!("attribute \"{text}\" --target-generated 2 --target \" x\""),
            &mut Recorder::default(),
        )
        .unwrap_err();
    assert!(e.message.contains("cannot be used with"), "{}", e.message);
}

/// SmolLM2-135M (the pinned GGUF, `make model`): gim's greedy continuations, with and without
/// the chat template, equal transformers' float64 ones (tests/fixtures/smollm2-135m/generate.json,
/// made by tools/make_smollm2_generations.py; every step's top-1 margin is recorded there).
#[test]
fn smollm2_continues_like_transformers() {
    let m = load("smollm2-135m", &LoadOpts::default()).unwrap_or_else(|e| panic!("{e}"));
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/smollm2-135m/generate.json"
    );
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let stop = gim::generate::eos_ids(&m);
    assert!(stop.contains(&2), "<|im_end|> (2) ends a turn: {stop:?}");
    for case in reference["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let prompt = if case["chat"].as_bool().unwrap() {
            gim::chat::user_prompt(&m, text).unwrap()
        } else {
            text.to_string()
        };
        assert_eq!(prompt, case["prompt"].as_str().unwrap(), "chat template");
        let n = case["max_tokens"].as_u64().unwrap() as usize;
        let g = gim::generate::continue_text(&m, &prompt, n, &stop, |_| Ok(())).unwrap();
        assert_eq!(
            g.prompt_ids,
            u32s(&case["prompt_ids"]),
            "{text}: prompt ids"
        );
        assert_eq!(g.ids, u32s(&case["ids"]), "{text}: {:?}", g.text);
        assert_eq!(g.text, case["decoded"].as_str().unwrap());
    }
}
