//! Circuit tools against real patching: sanity on every family, ground truth on the toy models.

mod common;
use common::*;

use gim::attribution::Method;
use gim::circuit::*;
use gim::model::GimRules;

#[test]
fn patching_everything_reproduces_the_corrupt_run_on_every_family() {
    for arch in ARCHS {
        let m = gim::load(model_dir(arch).to_str().unwrap(), &Default::default()).unwrap();
        let p = fixture_problem();
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

/// A clean prompt of the fixtures' vocabulary with two tokens changed in its corruption.
fn fixture_problem() -> Problem {
    let clean: Vec<u32> = vec![57, 260, 80, 372, 294, 340, 273, 84, 278, 11, 300];
    let mut corrupt = clean.clone();
    corrupt[3] = 101;
    corrupt[8] = 202;
    Problem {
        clean,
        corrupt: Corruption::Prompt(corrupt),
        target: 372,
        foil: Some(340),
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

// ---- circuits over data sets (MIB-style CPR / CMD) ----

fn pairs_path() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/toy_ioi_pairs.jsonl")
        .to_string_lossy()
        .into_owned()
}

/// `%gim circuit` / `gim circuit` arguments parsed as clap parses them.
fn circuit_args(extra: &[&str]) -> gim::args::CircuitArgs {
    use clap::Parser;
    let mut argv = vec!["circuit"];
    argv.extend_from_slice(extra);
    gim::args::CircuitArgs::try_parse_from(argv).unwrap()
}

#[test]
fn data_set_edge_scores_are_the_mean_of_single_pair_edge_attributions() {
    let m = gim::load("toy-ioi", &Default::default()).unwrap();
    let a = circuit_args(&["--data", &pairs_path(), "--limit", "5", "--split", "1"]);
    let split = a.data.split(&m).unwrap().unwrap();
    assert_eq!(
        (split.find.len(), split.eval.len(), split.skipped),
        (5, 5, 11)
    );
    let opts = DatasetOpts::default();
    for (method, rules) in [
        (Method::Gim, GimRules::gim()),
        (Method::Gradient, GimRules::off()),
        (Method::QkvOnly, GimRules::qkv_only()),
    ] {
        let mean = mean_edge_attribution(&m, &split.find, method, &opts, &mut |_| {}).unwrap();
        let singles: Vec<EdgeAttribution> = split
            .find
            .iter()
            .map(|p| edge_attribution(&m, p, rules).unwrap())
            .collect();
        for (i, e) in mean.edges.iter().enumerate() {
            let want = singles.iter().map(|s| s.edges[i].score).sum::<f64>() / 5.0;
            assert_eq!(
                (e.from, e.to),
                (singles[0].edges[i].from, singles[0].edges[i].to)
            );
            assert!(
                (e.score - want).abs() < 1e-6,
                "{method:?} edge {i}: {} vs {want}",
                e.score
            );
        }
    }
    // EAP-IG likewise averages its single-pair scores
    let opts = DatasetOpts {
        ig_steps: 3,
        ..Default::default()
    };
    let mean = mean_edge_attribution(
        &m,
        &split.find,
        Method::IntegratedGradients,
        &opts,
        &mut |_| {},
    )
    .unwrap();
    let singles: Vec<EdgeAttribution> = split
        .find
        .iter()
        .map(|p| edge_attribution_ig(&m, p, GimRules::off(), 3).unwrap())
        .collect();
    for (i, e) in mean.edges.iter().enumerate() {
        let want = singles.iter().map(|s| s.edges[i].score).sum::<f64>() / 5.0;
        assert!(
            (e.score - want).abs() < 1e-6,
            "IG edge {i}: {} vs {want}",
            e.score
        );
    }
}

#[test]
fn integrated_gradient_edge_scores_are_complete_where_plain_gradients_are_not() {
    // Completeness: the embedding's edges to every receiver add up to Δe · ∇_e m, which for
    // integrated gradients along corrupt → clean tends to m(clean) − m(corrupt) as steps grow;
    // a single gradient at the clean point (EAP) is only a first-order estimate.
    let m = gim::load("toy-ioi", &Default::default()).unwrap();
    let probs = ioi_problems(&m, 4);
    let (mut err_ig, mut err_g, mut err_ig1) = (0.0, 0.0, 0.0);
    for p in &probs {
        let embed_sum = |ea: &EdgeAttribution| -> f64 {
            ea.edges
                .iter()
                .filter(|e| e.from == Node::Embed)
                .map(|e| e.score)
                .sum()
        };
        let ig = edge_attribution_ig(&m, p, GimRules::off(), 64).unwrap();
        let ig1 = edge_attribution_ig(&m, p, GimRules::off(), 1).unwrap();
        let g = edge_attribution(&m, p, GimRules::off()).unwrap();
        let d = ig.metric_clean - ig.metric_corrupt;
        assert!((ig.metric_clean - g.metric_clean).abs() < 1e-4);
        assert!((ig.metric_corrupt - g.metric_corrupt).abs() < 1e-4);
        err_ig += ((embed_sum(&ig) - d) / d).abs();
        err_ig1 += ((embed_sum(&ig1) - d) / d).abs();
        err_g += ((embed_sum(&g) - d) / d).abs();
    }
    let n = probs.len() as f64;
    let (err_ig, err_ig1, err_g) = (err_ig / n, err_ig1 / n, err_g / n);
    println!(
        "completeness error (relative): IG-64 {err_ig:.4}, IG-1 {err_ig1:.4}, gradient {err_g:.4}"
    );
    assert!(
        err_ig < 0.02,
        "IG-64 relative completeness error {err_ig} (measured 0.007)"
    );
    assert!(err_ig < err_g / 4.0, "IG {err_ig} vs gradient {err_g}");
    assert!(err_ig < err_ig1, "more steps must be more complete");
}

#[test]
fn data_set_faithfulness_is_real_patching_normalised_after_averaging() {
    let m = gim::load("toy-ioi", &Default::default()).unwrap();
    let a = circuit_args(&["--data", &pairs_path(), "--limit", "8"]);
    let split = a.data.split(&m).unwrap().unwrap();
    assert_eq!((split.find.len(), split.eval.len()), (4, 4));
    let opts = DatasetOpts {
        methods: vec![Method::Gim, Method::Random],
        fractions: vec![0.0, 0.05, 0.2, 1.0],
        bootstrap: 200,
        ..Default::default()
    };
    let r = dataset_report(&m, &split, &opts, &mut |_| {}).unwrap();
    assert_eq!(r.n_eval, 4);
    // the report names the 8 of 16 lines that --limit left out, and JupyterLab gets its two
    // markdown tables (CPR/CMD, the curves) as HTML tables with a row per method
    assert_eq!(r.n_skipped, 8);
    let table = gim::render::dataset_table(&r);
    assert!(
        table.contains("4 evaluate, 8 lines left out by --filter/--limit ("),
        "{table}"
    );
    let html = gim::session::views::text_html(&table);
    assert_eq!(html.matches("<table").count(), 2, "{html}");
    assert_eq!(html.matches("<tr>").count(), 2 * (1 + 2), "{html}");
    assert!(!html.contains("|---|"), "{html}");
    assert_eq!(r.edges[0], 0);
    assert_eq!(r.edges[3], r.n_edges);
    assert_eq!(r.edges[2], r.n_edges / 5);
    for ms in &r.methods {
        for curve in [&ms.faithfulness_signed, &ms.faithfulness_abs] {
            assert!(
                curve[0].abs() < 1e-3,
                "{}: f(0 edges) = {}",
                ms.method,
                curve[0]
            );
            assert!(
                (curve[3] - 1.0).abs() < 1e-4,
                "{}: f(all) = {}",
                ms.method,
                curve[3]
            );
        }
    }
    // brute force at 20%: the gim ranking's top-k by signed score, every other edge patched
    let ea = mean_edge_attribution(&m, &split.find, Method::Gim, &opts, &mut |_| {}).unwrap();
    let mut ranked = ea.edges.clone();
    ranked.sort_by(|x, y| y.score.total_cmp(&x.score));
    let k = r.edges[2];
    let outside: Vec<(Node, Receiver)> = ranked[k..].iter().map(|e| (e.from, e.to)).collect();
    let (mut mc, mut mk, mut mf) = (0.0, 0.0, 0.0);
    for p in &split.eval {
        let single = edge_attribution(&m, p, GimRules::off()).unwrap();
        let clean = sender_acts(&m, &p.clean).unwrap();
        let corr = corrupt_acts(&m, p, &clean).unwrap();
        mf += patch_edges(&m, p, &corr, &outside).unwrap();
        mc += single.metric_clean;
        mk += single.metric_corrupt;
    }
    let want = (mf - mk) / (mc - mk);
    let got = r.methods[0].faithfulness_signed[2];
    assert!(
        (got - want).abs() < 1e-6,
        "f(20%) {got} vs brute force {want}"
    );
}

#[test]
fn cpr_and_cmd_are_trapezoids_of_the_curves_with_ordered_bootstrap_intervals() {
    let m = gim::load("toy-ioi", &Default::default()).unwrap();
    let a = circuit_args(&["--data", &pairs_path(), "--split", "0.25"]);
    let split = a.data.split(&m).unwrap().unwrap();
    assert_eq!((split.find.len(), split.eval.len()), (4, 12));
    let opts = DatasetOpts {
        methods: vec![Method::Gim, Method::Gradient],
        ..Default::default()
    };
    let r = dataset_report(&m, &split, &opts, &mut |_| {}).unwrap();
    assert_eq!(r.fractions, MIB_FRACTIONS.to_vec());
    for ms in &r.methods {
        let (mut cpr, mut cmd) = (0.0, 0.0);
        for i in 0..r.fractions.len() - 1 {
            let dx = r.fractions[i + 1] - r.fractions[i];
            cpr += dx * (ms.faithfulness_signed[i] + ms.faithfulness_signed[i + 1]) / 2.0;
            cmd += dx
                * ((1.0 - ms.faithfulness_abs[i]).abs() + (1.0 - ms.faithfulness_abs[i + 1]).abs())
                / 2.0;
        }
        assert!((ms.cpr.est - cpr).abs() < 1e-12, "{} CPR", ms.method);
        assert!((ms.cmd.est - cmd).abs() < 1e-12, "{} CMD", ms.method);
        for iv in [ms.cpr, ms.cmd] {
            assert!(iv.lo <= iv.est && iv.est <= iv.hi, "{}: {iv:?}", ms.method);
            assert!(iv.hi > iv.lo, "{}: degenerate interval {iv:?}", ms.method);
        }
        // the same examples twice over (the same empirical distribution, twice the data):
        // the bootstrap interval narrows (by about √2)
        let twice = |v: &[f64]| -> Vec<f64> { v.iter().chain(v).copied().collect() };
        let twice_rows =
            |v: &Vec<Vec<f64>>| -> Vec<Vec<f64>> { v.iter().map(|row| twice(row)).collect() };
        let (c2, m2) = cpr_cmd(
            &r.fractions,
            &twice_rows(&ms.metrics_signed),
            &twice_rows(&ms.metrics_abs),
            &twice(&r.metric_clean),
            &twice(&r.metric_corrupt),
            1000,
            0,
        );
        println!(
            "{}: CPR {:.3} [{:.3}, {:.3}], doubled [{:.3}, {:.3}]; CMD {:.3} [{:.3}, {:.3}], doubled [{:.3}, {:.3}]",
            ms.method, ms.cpr.est, ms.cpr.lo, ms.cpr.hi, c2.lo, c2.hi, ms.cmd.est, ms.cmd.lo, ms.cmd.hi, m2.lo, m2.hi
        );
        assert!((c2.est - ms.cpr.est).abs() < 1e-12 && (m2.est - ms.cmd.est).abs() < 1e-12);
        assert!(
            c2.hi - c2.lo < 0.85 * (ms.cpr.hi - ms.cpr.lo),
            "{}",
            ms.method
        );
        assert!(
            m2.hi - m2.lo < 0.85 * (ms.cmd.hi - ms.cmd.lo),
            "{}",
            ms.method
        );
    }
}

#[test]
fn data_set_errors_name_the_line() {
    let m = gim::load("toy-ioi", &Default::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("gim-circuit-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pairs.jsonl");
    let good = r#"{"clean":"When John and Kate went to the store , John gave a gift to","corrupt":"When John and Kate went to the store , Jack gave a gift to","target":" Kate","foil":" John"}"#;
    let bad = r#"{"clean":"When John and Kate went to the store , John gave a gift to","corrupt":"When John and Kate went to the store , John Jack gave a gift to","target":" Kate","foil":" John"}"#;
    std::fs::write(&path, format!("{good}\n\n{good}\n{bad}\n")).unwrap();
    let p = path.to_string_lossy().into_owned();
    let err = circuit_args(&["--data", &p])
        .data
        .split(&m)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 4: clean has")
            && err.contains("corrupt prompts must tokenize to the same length"),
        "{err}"
    );
    let n_clean = m
        .tok
        .encode(
            "When John and Kate went to the store , John gave a gift to",
            true,
        )
        .unwrap()
        .len();
    assert!(
        err.contains(&format!(
            "clean has {n_clean} tokens, corrupt {}",
            n_clean + 1
        )),
        "{err}"
    );
    // a missing field names the line and the field
    std::fs::write(&path, format!("{good}\n{{\"clean\":\"x\"}}\n")).unwrap();
    let err = circuit_args(&["--data", &p])
        .data
        .split(&m)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2") && err.contains("corrupt"), "{err}");
    // an unknown or edge-less method is a one-line error
    let err = circuit_args(&["--data", &p, "--methods", "gim,occlusion"])
        .data
        .methods()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("occlusion") && err.contains("no edge version"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn batched_edge_patching_equals_node_patching_of_the_same_senders_on_every_family() {
    // Patching every edge out of a set of senders is node patching of those senders (each of
    // their readers is a receiver): an independent reference (NodePatcher) for each batch row.
    for arch in ARCHS {
        let m = gim::load(model_dir(arch).to_str().unwrap(), &Default::default()).unwrap();
        let p = fixture_problem();
        let cfg = &m.model.cfg;
        let nodes = Node::all(cfg.n_layers, cfg.n_heads);
        let edges = all_edges(cfg);
        // Under a post-attention norm (Gemma2) a head's output in the residual stream is taken
        // at its own run's norm statistic, so a lone head's edges are not its node; a whole
        // layer's heads are (their sum is the block's output).
        let lone_heads = m.model.w.blocks[0].attn_post.is_none();
        let heads = |l: usize| (0..cfg.n_heads).map(move |h| Node::Head { layer: l, head: h });
        // sender sets: none, a head or a layer's heads, the embeddings, a mix, all
        let mut picks: Vec<Vec<Node>> = vec![
            vec![],
            heads(0).collect(),
            vec![Node::Embed],
            std::iter::once(Node::Mlp { layer: 0 })
                .chain(heads(1))
                .collect(),
            nodes.clone(),
        ];
        if lone_heads {
            picks.push(vec![Node::Head { layer: 0, head: 1 }]);
            picks.push(nodes.iter().copied().step_by(2).collect());
        }
        let sets: Vec<Vec<(Node, Receiver)>> = picks
            .iter()
            .map(|ns| {
                edges
                    .iter()
                    .copied()
                    .filter(|(u, _)| ns.contains(u))
                    .collect()
            })
            .collect();
        let clean_acts = sender_acts(&m, &p.clean).unwrap();
        let corr = corrupt_acts(&m, &p, &clean_acts).unwrap();
        let refs: Vec<&[(Node, Receiver)]> = sets.iter().map(|s| s.as_slice()).collect();
        let batched = patch_edge_sets(&m, &p, &corr, &refs).unwrap();
        assert_eq!(batched.len(), sets.len());
        for ((ns, got), set) in picks.iter().zip(&batched).zip(&refs) {
            let want = patch_nodes(&m, &p, ns).unwrap();
            assert!(
                (got - want).abs() < 1e-4 * want.abs().max(1.0),
                "{arch}: {} senders: edges {got} vs nodes {want}",
                ns.len()
            );
            // a row of a batch is the same as the set alone
            let alone = patch_edges(&m, &p, &corr, set).unwrap();
            assert!((got - alone).abs() < 1e-5 * alone.abs().max(1.0), "{arch}");
        }
        // the sets differ: the check is not vacuous
        assert!(
            (batched[0] - batched[4]).abs() > 1e-3,
            "{arch}: {batched:?}"
        );
    }
}

/// A data-set report without its timings (which differ between runs).
fn untimed(r: &DatasetReport) -> serde_json::Value {
    untimed_json(serde_json::to_value(r).unwrap())
}

/// A data-set report's JSON without its timings.
fn untimed_json(mut v: serde_json::Value) -> serde_json::Value {
    v["seconds"] = 0.into();
    for m in v["methods"].as_array_mut().unwrap() {
        m["seconds_find"] = 0.into();
        m["seconds_eval"] = 0.into();
    }
    v
}

#[test]
fn sharded_hunts_merge_to_the_single_run_exactly() {
    let m = gim::load("toy-ioi", &Default::default()).unwrap();
    let a = circuit_args(&["--data", &pairs_path(), "--limit", "7"]);
    let split = a.data.split(&m).unwrap().unwrap();
    let opts = DatasetOpts {
        methods: vec![
            Method::Gim,
            Method::Gradient,
            Method::IntegratedGradients,
            Method::Random,
        ],
        ig_steps: 2,
        bootstrap: 100,
        ..Default::default()
    };
    let single = dataset_report(&m, &split, &opts, &mut |_| {}).unwrap();
    // every part through its JSON file form
    let through_json =
        |p: Part| -> Part { serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap() };
    for n in [1, 3, 5] {
        let shard = |i| Shard { index: i, count: n };
        let finds: Vec<FindPart> = (0..n)
            .rev()
            .map(|i| {
                match through_json(Part::Find(
                    find_part(&m, &split, &opts, shard(i), &mut |_| {}).unwrap(),
                )) {
                    Part::Find(f) => f,
                    _ => unreachable!(),
                }
            })
            .collect();
        let found = match through_json(Part::Scores(merge_find(&finds).unwrap())) {
            Part::Scores(f) => f,
            _ => unreachable!(),
        };
        let evals: Vec<EvalPart> = (0..n)
            .map(|i| {
                match through_json(Part::Eval(
                    eval_part(&m, &split, &found, shard(i), &mut |_| {}).unwrap(),
                )) {
                    Part::Eval(e) => e,
                    _ => unreachable!(),
                }
            })
            .collect();
        let merged = merge_eval(&evals).unwrap();
        assert_eq!(untimed(&merged), untimed(&single), "{n} shards");
        // a missing or repeated shard is an error naming it
        if n > 1 {
            let err = merge_eval(&evals[1..]).unwrap_err().to_string();
            assert!(err.contains("shard 0/") && err.contains("missing"), "{err}");
            let twice = vec![evals[0].clone(), evals[0].clone()];
            let err = merge_eval(&twice).unwrap_err().to_string();
            assert!(err.contains("given twice"), "{err}");
        }
    }
    // parts of another study do not merge
    let other = DatasetOpts {
        seed: 9,
        ..opts.clone()
    };
    let a0 = find_part(&m, &split, &opts, Shard { index: 0, count: 2 }, &mut |_| {}).unwrap();
    let b1 = find_part(
        &m,
        &split,
        &other,
        Shard { index: 1, count: 2 },
        &mut |_| {},
    )
    .unwrap();
    let err = merge_find(&[a0, b1]).unwrap_err().to_string();
    assert!(err.contains("different studies"), "{err}");
    for bad in ["2/2", "x/3", "1", "0/0"] {
        let err = Shard::parse(bad).unwrap_err().to_string();
        assert!(
            err.contains("--shard") && err.contains("I/N"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn gim_merge_of_shard_files_prints_the_single_run_report() {
    let dir = std::env::temp_dir().join(format!("gim-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pairs = pairs_path();
    let gim = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gim"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gim {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = [
        "circuit",
        "--model",
        "toy-ioi",
        "--data",
        &pairs,
        "--limit",
        "6",
        "--methods",
        "gim,random",
        "--bootstrap",
        "50",
    ];
    let file = |s: &str| dir.join(s).to_string_lossy().into_owned();
    let single: serde_json::Value =
        serde_json::from_str(&gim(&[&base[..], &["--json"]].concat())).unwrap();
    let mut finds = vec!["merge".to_string()];
    for i in 0..2 {
        let (sh, out) = (format!("{i}/2"), file(&format!("find{i}.json")));
        gim(&[&base[..], &["--shard", &sh, "--out", &out]].concat());
        finds.push(out);
    }
    let scores = file("scores.json");
    finds.extend(["--out".to_string(), scores.clone()]);
    gim(&finds.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let mut evals = vec!["merge".to_string(), "--json".to_string()];
    for i in 0..2 {
        let (sh, out) = (format!("{i}/2"), file(&format!("eval{i}.json")));
        gim(&[
            &base[..],
            &["--scores", &scores, "--shard", &sh, "--out", &out],
        ]
        .concat());
        evals.push(out);
    }
    let merged: serde_json::Value =
        serde_json::from_str(&gim(&evals.iter().map(|s| s.as_str()).collect::<Vec<_>>())).unwrap();
    assert_eq!(untimed_json(merged), untimed_json(single));
    // a finding part given as --scores is a one-line error
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gim"))
        .args([&base[..], &["--scores", &file("find0.json")]].concat())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("gim merge") && err.lines().count() == 1,
        "{err}"
    );
    // a device or a pipe is not a part file: a one-line error, not a hang
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gim"))
        .args(["merge", "/dev/zero"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is not a part file") && err.lines().count() == 1,
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn paired_differences_are_the_difference_of_the_areas_with_a_paired_interval() {
    let m = gim::load("toy-ioi", &Default::default()).unwrap();
    let a = circuit_args(&["--data", &pairs_path(), "--split", "0.25"]);
    let split = a.data.split(&m).unwrap().unwrap();
    let opts = DatasetOpts {
        methods: vec![Method::Gim, Method::Gradient, Method::Random],
        bootstrap: 500,
        ..Default::default()
    };
    let r = dataset_report(&m, &split, &opts, &mut |_| {}).unwrap();
    assert!(r.methods[0].cpr_minus_first.is_none() && r.methods[0].cmd_minus_first.is_none());
    let g = &r.methods[0];
    for ms in &r.methods[1..] {
        let (dp, dc) = (ms.cpr_minus_first.unwrap(), ms.cmd_minus_first.unwrap());
        assert!(
            (dp.est - (ms.cpr.est - g.cpr.est)).abs() < 1e-12,
            "{}",
            ms.method
        );
        assert!(
            (dc.est - (ms.cmd.est - g.cmd.est)).abs() < 1e-12,
            "{}",
            ms.method
        );
        assert!(dp.lo <= dp.est && dp.est <= dp.hi && dc.lo <= dc.est && dc.est <= dc.hi);
    }
    // against itself: exactly zero, on every resample
    let (p, c) = paired_difference(
        &r.fractions,
        (&g.metrics_signed, &g.metrics_abs),
        (&g.metrics_signed, &g.metrics_abs),
        &r.metric_clean,
        &r.metric_corrupt,
        200,
        0,
    );
    for iv in [p, c] {
        assert_eq!((iv.est, iv.lo, iv.hi), (0.0, 0.0, 0.0));
    }
    // random is far below gim on this toy: the paired interval excludes zero
    let rnd = r.methods[2].cpr_minus_first.unwrap();
    assert!(rnd.hi < 0.0, "random − gim CPR {rnd:?}");
}
