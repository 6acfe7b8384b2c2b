//! The four GIM rules, one by one and together, against the float64 fixtures of all eight families.

mod common;
use common::*;

use gim::attribution::{attribute, AttributeRequest, Baseline, Method, TargetSpec};
use gim::model::GimRules;

fn rules_for(name: &str) -> (Method, GimRules) {
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

#[test]
fn every_rule_set_matches_the_reference_on_all_families() {
    let mut worst = 0.0f64;
    for arch in ARCHS {
        let fx = fixture(arch);
        let m = gim::load(model_dir(arch).to_str().unwrap(), &Default::default()).unwrap();
        for case in fx["cases"].as_array().unwrap() {
            let ids = u32s(&case["input_ids"]);
            let target = case["target_token_id"].as_u64().unwrap() as u32;
            let baseline = case["baseline_token_id"].as_u64().unwrap() as u32;
            for (set, reference) in case["attributions"].as_object().unwrap() {
                let (method, rules) = rules_for(set);
                let mut req = AttributeRequest::new(ids.clone());
                req.method = method;
                req.rules = rules;
                req.target = if case["target_kind"] == "argmax" {
                    TargetSpec::Argmax
                } else {
                    TargetSpec::Id(target)
                };
                req.baseline = Baseline::Default;
                let a = attribute(&m, &req).unwrap();
                assert_eq!(a.target_id, target, "{arch} {set}: target");
                assert_eq!(
                    a.baseline_id,
                    Some(baseline),
                    "{arch} {set}: default baseline"
                );
                let tl = case["target_logit"].as_f64().unwrap();
                assert!(
                    (a.target_logit - tl).abs() <= 1e-4 * tl.abs().max(1.0),
                    "{arch}: target logit"
                );
                let err = rel_err(&a.attributions, &f64s(reference));
                worst = worst.max(err);
                assert!(
                    err <= 1e-4,
                    "{arch} {} {set}: rel err {err:.3e}",
                    case["name"]
                );
            }
        }
    }
    println!("worst relative error over all families, cases and rule sets: {worst:.2e}");
}
