//! Gradients against finite differences, and each GIM rule's effect where it should be.

mod common;
use common::*;

use candle_core::{DType, Tensor};
use gim::attribution::{attribute, attribute_many, AttributeRequest, Baseline, Method, TargetSpec};
use gim::model::{ForwardOpts, GimRules, Positions};

fn load(arch: &str, dtype: DType) -> gim::LoadedModel {
    let opts = gim::LoadOpts {
        dtype,
        ..Default::default()
    };
    gim::load(model_dir(arch).to_str().unwrap(), &opts).unwrap()
}

fn target_logit(m: &gim::LoadedModel, e: &Tensor, t: u32) -> f64 {
    logit_of(m, e, Positions::Last, t)
}

/// Target logit at `positions` (one) of one forward of the embeddings `e`.
fn logit_of(m: &gim::LoadedModel, e: &Tensor, positions: Positions, t: u32) -> f64 {
    let mut o = ForwardOpts {
        positions,
        ..Default::default()
    };
    let h = m.model.forward_hidden(e, &mut o).unwrap();
    m.model
        .unembed_rows(&h, &[t])
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0]
}

const IDS: [u32; 7] = [50, 299, 334, 312, 262, 373, 88];

#[test]
fn plain_gradient_matches_central_finite_differences_in_f64() {
    for arch in ARCHS {
        let m = load(arch, DType::F64);
        let t = 300u32;
        let mut req = AttributeRequest::new(IDS.to_vec());
        req.method = Method::Gradient;
        req.target = TargetSpec::Id(t);
        let a = attribute(&m, &req).unwrap();
        // attribution_i = g_i · (x_i − b_i) is the directional derivative along (x_i − b_i) at token i
        let x = m.model.embed_ids(&[IDS.to_vec()]).unwrap();
        let b = m
            .model
            .embed_ids(&[vec![a.baseline_id.unwrap(); IDS.len()]])
            .unwrap();
        let eps = 1e-5;
        for i in 0..IDS.len() {
            let mut mask = vec![0f64; IDS.len()];
            mask[i] = 1.0;
            let mk = Tensor::from_vec(mask, (1, IDS.len(), 1), &m.model.device).unwrap();
            let dir = ((&x - &b).unwrap().broadcast_mul(&mk).unwrap() * eps).unwrap();
            let fp = target_logit(&m, &(&x + &dir).unwrap(), t);
            let fm = target_logit(&m, &(&x - &dir).unwrap(), t);
            let fd = (fp - fm) / (2.0 * eps);
            let scale = a.attributions.iter().fold(1e-3f64, |s, v| s.max(v.abs()));
            assert!(
                (fd - a.attributions[i]).abs() <= 1e-6 * scale.max(1.0),
                "{arch} token {i}: autograd {} vs finite differences {fd}",
                a.attributions[i]
            );
        }
    }
}

fn attr(m: &gim::LoadedModel, rules: GimRules) -> Vec<f64> {
    let mut req = AttributeRequest::new(IDS.to_vec());
    req.rules = rules;
    req.target = TargetSpec::Id(300);
    attribute(m, &req).unwrap().attributions
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn each_rule_acts_where_it_should() {
    for arch in ARCHS {
        let m = load(arch, DType::F32);
        let off = attr(&m, GimRules::off());
        // T = 1 is the ordinary gradient; scales of 1 are no-ops
        let t1 = GimRules {
            softmax_temperature: Some(1.0),
            ..GimRules::off()
        };
        assert_eq!(attr(&m, t1), off, "{arch}: T=1 must change nothing");
        let ones = GimRules {
            q_scale: Some(1.0),
            k_scale: Some(1.0),
            v_scale: Some(1.0),
            gate_scale: Some(1.0),
            up_scale: Some(1.0),
            ..GimRules::off()
        };
        assert_eq!(
            attr(&m, ones),
            off,
            "{arch}: unit scales must change nothing"
        );
        // every rule that has something to act on changes the attribution
        assert!(
            max_diff(&attr(&m, GimRules::freeze_norm_only()), &off) > 1e-6,
            "{arch}: freeze-norm had no effect"
        );
        assert!(
            max_diff(&attr(&m, GimRules::softmax_t_only()), &off) > 1e-6,
            "{arch}: softmax T had no effect"
        );
        assert!(
            max_diff(&attr(&m, GimRules::qkv_only()), &off) > 1e-6,
            "{arch}: qkv scaling had no effect"
        );
        let gu = attr(&m, GimRules::gate_up_only());
        if *arch == "gpt2" {
            assert_eq!(
                gu, off,
                "gpt2 has no gated MLP: gate/up scaling must change nothing"
            );
        } else {
            assert!(
                max_diff(&gu, &off) > 1e-6,
                "{arch}: gate/up scaling had no effect"
            );
        }
        // value-only scaling of 0 removes every path through attention values
        let v0 = GimRules {
            v_scale: Some(0.0),
            ..GimRules::off()
        };
        assert!(
            max_diff(&attr(&m, v0), &off) > 1e-6,
            "{arch}: v scale 0 had no effect"
        );
    }
}

#[test]
fn forward_logits_are_bit_identical_with_and_without_rules() {
    for arch in ARCHS {
        let m = load(arch, DType::F32);
        let e = m.model.embed_ids(&[IDS.to_vec()]).unwrap();
        let run = |rules: GimRules| -> Vec<f32> {
            let var = candle_core::Var::from_tensor(&e).unwrap();
            let mut o = ForwardOpts {
                rules,
                positions: Positions::All,
                ..Default::default()
            };
            let h = m.model.forward_hidden(var.as_tensor(), &mut o).unwrap();
            m.model
                .unembed(&h)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(run(GimRules::off()), run(GimRules::gim()), "{arch}");
    }
}

#[test]
fn integrated_gradients_is_complete() {
    // Σ IG attributions ≈ f(x) − f(baseline) (completeness), with enough steps.
    let m = load("llama", DType::F64);
    let mut req = AttributeRequest::new(IDS.to_vec());
    req.method = Method::IntegratedGradients;
    req.target = TargetSpec::Id(300);
    req.ig_steps = 64;
    let a = attribute(&m, &req).unwrap();
    let b = m
        .model
        .embed_ids(&[vec![a.baseline_id.unwrap(); IDS.len()]])
        .unwrap();
    let fb = target_logit(&m, &b, 300);
    let sum: f64 = a.attributions.iter().sum();
    let gap = a.target_logit - fb;
    assert!(
        (sum - gap).abs() < 1e-2 * gap.abs().max(1.0),
        "IG sum {sum} vs f(x)-f(b) {gap}"
    );
}

/// Target logit at `pos` of one full forward of `ids`.
fn logit_at(m: &gim::LoadedModel, ids: &[u32], pos: usize, t: u32) -> f64 {
    let e = m.model.embed_ids(&[ids.to_vec()]).unwrap();
    logit_of(m, &e, Positions::At(vec![pos]), t)
}

#[test]
fn occlusion_equals_brute_force_replacement() {
    // 40 tokens: three chunks of rows, the later two reusing the prompt's cached keys and values
    // (gemma2's sliding window of 16 is crossed); read out at the last position and at 20.
    let ids: Vec<u32> = (0..40u32).map(|i| (i * 37 + 11) % 383 + 1).collect();
    for arch in ARCHS {
        let m = load(arch, DType::F64);
        for pos in [None, Some(20)] {
            let mut req = AttributeRequest::new(ids.clone());
            req.method = Method::Occlusion;
            req.target = TargetSpec::Id(300);
            req.position = pos.map(|p| p as i64);
            let a = attribute(&m, &req).unwrap();
            let b = a.baseline_id.unwrap();
            let at = pos.unwrap_or(ids.len() - 1);
            let clean = logit_at(&m, &ids, at, 300);
            assert!((a.target_logit - clean).abs() < 1e-9, "{arch}: clean value");
            let mut moved = 0;
            for i in 0..ids.len() {
                let mut r = ids.clone();
                r[i] = b;
                let want = clean - logit_at(&m, &r, at, 300);
                let got = a.attributions[i];
                assert!(
                    (got - want).abs() < 1e-9 * (1.0 + want.abs()),
                    "{arch} pos {pos:?} token {i}: {got} vs brute force {want}"
                );
                moved += (want.abs() > 1e-6) as usize;
            }
            // replacing a token after the read-out position changes nothing; before, it does
            assert!(moved > at / 2, "{arch}: only {moved} tokens mattered");
            assert!(a.attributions[at + 1..].iter().all(|&d| d.abs() < 1e-12));
        }
    }
}

#[test]
fn batched_attributions_equal_one_by_one() {
    let m = load("gemma2", DType::F32);
    let prompts = [
        "Paris is the capital",
        "When Mary and John went to the store",
        "a b",
    ];
    let reqs: Vec<AttributeRequest> = prompts
        .iter()
        .map(|p| AttributeRequest::new(m.tok.encode(p, true).unwrap()))
        .collect();
    let mut calls = 0;
    let many = attribute_many(&m, &reqs, 8, |_| calls += 1);
    assert!(calls >= 1);
    for (r, b) in reqs.iter().zip(many) {
        let one = attribute(&m, r).unwrap();
        let b = b.unwrap();
        assert_eq!(one.target_id, b.target_id);
        let err = rel_err(&b.attributions, &one.attributions);
        assert!(err < 1e-4, "batched vs single: {err}");
    }
}

#[test]
fn contrast_and_zero_baseline_and_logprob() {
    let m = load("llama", DType::F64);
    let mut req = AttributeRequest::new(IDS.to_vec());
    req.target = TargetSpec::Id(300);
    let t = attribute(&m, &req).unwrap();
    req.target = TargetSpec::Id(301);
    let f = attribute(&m, &req).unwrap();
    req.target = TargetSpec::Id(300);
    req.contrast = Some(TargetSpec::Id(301));
    let c = attribute(&m, &req).unwrap();
    // linearity of the gradient: attr(t − f) = attr(t) − attr(f)
    for i in 0..IDS.len() {
        assert!((c.attributions[i] - (t.attributions[i] - f.attributions[i])).abs() < 1e-9);
    }
    assert!((c.target_logit - (t.target_logit - f.target_logit)).abs() < 1e-9);
    req.contrast = None;
    req.baseline = Baseline::Zero;
    req.method = Method::Gradient;
    let z = attribute(&m, &req).unwrap();
    req.method = Method::GradXInput;
    let gx = attribute(&m, &req).unwrap();
    assert_eq!(z.baseline_id, None);
    assert_eq!(
        z.attributions, gx.attributions,
        "zero baseline = grad × input"
    );
    req.objective = gim::attribution::Objective::LogProb;
    let lp = attribute(&m, &req).unwrap();
    assert!(lp.target_logit < 0.0, "log-probabilities are negative");
}
