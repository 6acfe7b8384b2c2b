//! Circuit tools against real patching: sanity on every family, ground truth on the toy models.

mod common;
use common::*;

use gim::circuit::*;
use gim::model::GimRules;

#[test]
fn patching_everything_reproduces_the_corrupt_run_on_every_family() {
    for arch in ARCHS {
        let m = gim::load(model_dir(arch).to_str().unwrap(), &Default::default()).unwrap();
        let clean: Vec<u32> = vec![57, 260, 80, 372, 294, 340, 273, 84, 278, 11, 300];
        let mut corrupt = clean.clone();
        corrupt[3] = 101;
        corrupt[8] = 202;
        let p = Problem {
            clean,
            corrupt: Corruption::Prompt(corrupt),
            target: 372,
            foil: Some(340),
        };
        let clean = sender_acts(&m, &p.clean).unwrap();
        let corr = corrupt_acts(&m, &p, &clean).unwrap();
        let ea = edge_attribution(&m, &p, GimRules::gim()).unwrap();
        let all: Vec<(Node, Receiver)> = ea.edges.iter().map(|e| (e.from, e.to)).collect();
        let m_all = patch_edges(&m, &p, &corr, &all).unwrap();
        let m_none = patch_edges(&m, &p, &corr, &[]).unwrap();
        assert!(
            (m_none - ea.metric_clean).abs() < 1e-4,
            "{arch}: no patch {m_none} vs clean {}",
            ea.metric_clean
        );
        assert!(
            (m_all - ea.metric_corrupt).abs() < 1e-3 * ea.metric_corrupt.abs().max(1.0),
            "{arch}: all edges {m_all} vs corrupt {}",
            ea.metric_corrupt
        );
        let nodes = Node::all(m.model.cfg.n_layers, m.model.cfg.n_heads);
        let m_nodes = patch_nodes(&m, &p, &nodes).unwrap();
        assert!(
            (m_nodes - ea.metric_corrupt).abs() < 1e-4 * ea.metric_corrupt.abs().max(1.0),
            "{arch}: all nodes"
        );
    }
}

fn ioi_problems(m: &gim::LoadedModel, n: usize) -> Vec<Problem> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/toy-ioi/ioi_prompts.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["heldout_template"] == true)
        .take(n)
        .map(|e| {
            let enc = |s: &str| m.tok.encode(s, true).unwrap();
            Problem {
                clean: enc(e["clean"].as_str().unwrap()),
                corrupt: Corruption::Prompt(enc(e["corrupt_abc"].as_str().unwrap())),
                target: m.tok.encode(e["io"].as_str().unwrap(), false).unwrap()[0],
                foil: Some(m.tok.encode(e["s"].as_str().unwrap(), false).unwrap()[0]),
            }
        })
        .collect()
}

#[test]
fn gim_node_scores_track_exact_patching_at_least_as_well_as_plain_gradients() {
    let m = gim::load("toy-ioi", &Default::default()).unwrap();
    let (mut rg, mut rp, mut og, mut op) = (0.0, 0.0, 0usize, 0usize);
    let probs = ioi_problems(&m, 10);
    for p in &probs {
        let (_, exact) = exact_node_effects(&m, p).unwrap();
        let g = node_attribution(&m, p, GimRules::gim()).unwrap();
        let pl = node_attribution(&m, p, GimRules::off()).unwrap();
        // the attribution's clean/corrupt metrics are the real ones
        assert!((g.metric_clean - pl.metric_clean).abs() < 1e-9);
        rg += spearman(&g.scores, &exact);
        rp += spearman(&pl.scores, &exact);
        og += top_k_overlap(&g.scores, &exact, 10);
        op += top_k_overlap(&pl.scores, &exact, 10);
    }
    let n = probs.len() as f64;
    println!(
        "IOI toy, {} held-out prompts: Spearman rho GIM {:.3} vs plain {:.3}; top-10 overlap GIM {:.2} vs plain {:.2}",
        probs.len(), rg / n, rp / n, og as f64 / n, op as f64 / n
    );
    assert!(
        rg / n >= rp / n,
        "GIM rank correlation must not be worse than plain gradients"
    );
    assert!(rg / n > 0.4, "GIM should track the exact effects");
}

#[test]
fn gim_circuits_reach_faithfulness_with_fewer_edges_than_plain_attribution_patching() {
    let m = gim::load("toy-ioi", &Default::default()).unwrap();
    let (mut kg, mut kp, mut kr, mut ag, mut ap) = (0usize, 0usize, 0usize, 0.0, 0.0);
    let probs = ioi_problems(&m, 6);
    for p in &probs {
        let eg = edge_attribution(&m, p, GimRules::gim()).unwrap();
        let ep = edge_attribution(&m, p, GimRules::off()).unwrap();
        let n = eg.edges.len();
        let sizes = default_sizes(n, 64);
        let cg = faithfulness_curve(
            &m,
            p,
            "gim",
            &eg.ranked(),
            &sizes,
            0.9,
            eg.metric_clean,
            eg.metric_corrupt,
        )
        .unwrap();
        let cp = faithfulness_curve(
            &m,
            p,
            "plain",
            &ep.ranked(),
            &sizes,
            0.9,
            eg.metric_clean,
            eg.metric_corrupt,
        )
        .unwrap();
        let cr = faithfulness_curve(
            &m,
            p,
            "random",
            &eg.edges,
            &sizes,
            0.9,
            eg.metric_clean,
            eg.metric_corrupt,
        )
        .unwrap();
        // the end points are the clean and the corrupted run
        assert!(
            (cg.points[0].faithfulness).abs() < 1e-3
                && (cg.points.last().unwrap().faithfulness - 1.0).abs() < 1e-3
        );
        kg += cg.edges_to_threshold.unwrap_or(n);
        kp += cp.edges_to_threshold.unwrap_or(n);
        kr += cr.edges_to_threshold.unwrap_or(n);
        ag += cg.area;
        ap += cp.area;
    }
    let n = probs.len();
    println!(
        "IOI toy, {n} prompts: mean edges to faithfulness 0.9: GIM {:.1}, plain {:.1}, forward-order {:.1}; mean area GIM {:.3} plain {:.3}",
        kg as f64 / n as f64, kp as f64 / n as f64, kr as f64 / n as f64, ag / n as f64, ap / n as f64
    );
    assert!(
        kg < kp,
        "GIM circuits should need fewer edges than plain attribution patching"
    );
}

#[test]
fn induction_model_has_a_previous_token_head_feeding_an_induction_head() {
    let m = gim::load("toy-induction", &Default::default()).unwrap();
    let seg = "ba ke mi so ta ri lo fe";
    let other = "du go nu pa le si ro te";
    // clean: the segment repeats, so " so" follows "mi" by induction; corrupt: first copy differs
    let clean = m.tok.encode(&format!("{seg} ba ke mi"), true).unwrap();
    let corrupt = m.tok.encode(&format!("{other} ba ke mi"), true).unwrap();
    assert_eq!(clean.len(), corrupt.len());
    let target = m.tok.encode("so", false).unwrap()[0];
    let p = Problem {
        clean: clean.clone(),
        corrupt: Corruption::Prompt(corrupt),
        target,
        foil: None,
    };
    let na = node_attribution(&m, &p, GimRules::gim()).unwrap();
    let heads: Vec<(Node, f64)> = na
        .ranked()
        .into_iter()
        .filter(|(n, _)| matches!(n, Node::Head { .. }))
        .collect();
    let top_l1 = heads
        .iter()
        .find(|(n, _)| matches!(n, Node::Head { layer: 1, .. }))
        .unwrap()
        .0;
    let top_l0 = heads
        .iter()
        .find(|(n, _)| matches!(n, Node::Head { layer: 0, .. }))
        .unwrap()
        .0;
    println!(
        "GIM head ranking: {:?}",
        heads
            .iter()
            .map(|(n, s)| format!("{} {s:+.3}", n.label()))
            .collect::<Vec<_>>()
    );
    let sc =
        head_pattern_scores(&m, &m.tok.encode(&format!("{seg} {seg}"), true).unwrap()).unwrap();
    let (Node::Head { head: h1, .. }, Node::Head { head: h0, .. }) = (top_l1, top_l0) else {
        unreachable!()
    };
    println!(
        "prev-token scores L0 {:?}\ninduction scores L1 {:?}",
        sc.prev_token[0], sc.induction[1]
    );
    println!(
        "top GIM heads: {} (induction score {:.2}) and {} (previous-token score {:.2})",
        top_l1.label(),
        sc.induction[1][h1],
        top_l0.label(),
        sc.prev_token[0][h0]
    );
    // the strongest head overall is a layer-1 head whose pattern is induction
    assert!(
        matches!(heads[0].0, Node::Head { layer: 1, .. }),
        "top head {:?}",
        heads[0].0
    );
    assert!(
        sc.induction[1][h1] > 0.8,
        "top layer-1 head attends to the token after the earlier occurrence"
    );
    // the top layer-0 head is among the top 3 and is the model's previous-token head
    assert!(
        heads.iter().take(3).any(|(n, _)| *n == top_l0),
        "layer-0 head not in the top 3"
    );
    let best_prev = sc.prev_token[0].iter().cloned().fold(0.0, f64::max);
    assert_eq!(
        sc.prev_token[0][h0], best_prev,
        "top layer-0 head is the strongest previous-token head"
    );
    assert!(best_prev > 0.8, "prev-token score {best_prev:.2}");
}
