//! Last-position logits of every fixture case match the float64 reference (all eight families).

mod common;
use common::*;

use gim::model::Positions;

#[test]
fn logits_match_float64_reference_for_all_families() {
    for arch in ARCHS {
        let fx = fixture(arch);
        let m = gim::load(model_dir(arch).to_str().unwrap(), &Default::default())
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(m.model.cfg.model_type, *arch);
        for case in fx["cases"].as_array().unwrap() {
            let ids = u32s(&case["input_ids"]);
            // the tokenizer reproduces the fixture's ids
            let enc = m.tok.encode(case["text"].as_str().unwrap(), true).unwrap();
            assert_eq!(enc, ids, "{arch}: tokenization of {:?}", case["text"]);
            let logits = m.model.logits(&[ids], Positions::Last).unwrap();
            let ours: Vec<f64> = logits
                .flatten_all()
                .unwrap()
                .to_dtype(candle_core::DType::F64)
                .unwrap()
                .to_vec1()
                .unwrap();
            let reference = f64s(&case["logits_last"]);
            let err = rel_err(&ours, &reference);
            println!("{arch} {}: rel err {err:.2e}", case["name"]);
            assert!(err <= 1e-4, "{arch} {}: rel err {err:.3e}", case["name"]);
        }
    }
}
