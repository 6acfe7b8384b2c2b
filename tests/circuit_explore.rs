mod common;
use gim::circuit::*;
use gim::model::GimRules;

#[test]
#[ignore]
fn explore_ioi() {
    let m = gim::load("toy-ioi", &Default::default()).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string("models/toy-ioi/ioi_prompts.jsonl").unwrap()
        .lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut rg = 0.0; let mut rp = 0.0; let mut og = 0; let mut op = 0; let mut n = 0;
    let (mut kg, mut kp, mut kr) = (0usize, 0usize, 0usize);
    for ex in lines.iter().filter(|e| e["heldout_template"] == true).take(10) {
        let enc = |s: &str| m.tok.encode(s, true).unwrap();
        let p = Problem { clean: enc(ex["clean"].as_str().unwrap()), corrupt: Corruption::Prompt(enc(ex["corrupt_abc"].as_str().unwrap())),
            target: m.tok.encode(ex["io"].as_str().unwrap(), false).unwrap()[0], foil: Some(m.tok.encode(ex["s"].as_str().unwrap(), false).unwrap()[0]) };
        let (_, exact) = exact_node_effects(&m, &p).unwrap();
        let g = node_attribution(&m, &p, GimRules::gim()).unwrap();
        let pl = node_attribution(&m, &p, GimRules::off()).unwrap();
        let sg = spearman(&g.scores, &exact); let sp = spearman(&pl.scores, &exact);
        rg += sg; rp += sp; og += top_k_overlap(&g.scores, &exact, 10); op += top_k_overlap(&pl.scores, &exact, 10); n += 1;
        let eg = edge_attribution(&m, &p, GimRules::gim()).unwrap();
        let ep = edge_attribution(&m, &p, GimRules::off()).unwrap();
        let sizes: Vec<usize> = (0..=eg.edges.len()).collect();
        let cg = faithfulness_curve(&m, &p, "gim", &eg.ranked(), &sizes, 0.9, eg.metric_clean, eg.metric_corrupt).unwrap();
        let cp = faithfulness_curve(&m, &p, "plain", &ep.ranked(), &sizes, 0.9, eg.metric_clean, eg.metric_corrupt).unwrap();
        let mut rnd = eg.edges.clone();
        let mut st = 7u64; for i in (1..rnd.len()).rev() { st = st.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); let j = (st >> 33) as usize % (i + 1); rnd.swap(i, j); }
        let cr = faithfulness_curve(&m, &p, "random", &rnd, &sizes, 0.9, eg.metric_clean, eg.metric_corrupt).unwrap();
        println!("clean {:.2} corr {:.2} | rho gim {sg:.3} plain {sp:.3} | edges to 0.9: gim {:?} plain {:?} random {:?} of {} | auc {:.3} {:.3} {:.3}",
            eg.metric_clean, eg.metric_corrupt, cg.edges_to_threshold, cp.edges_to_threshold, cr.edges_to_threshold, eg.edges.len(), cg.area, cp.area, cr.area);
        kg += cg.edges_to_threshold.unwrap_or(999); kp += cp.edges_to_threshold.unwrap_or(999); kr += cr.edges_to_threshold.unwrap_or(999);
    }
    println!("mean rho gim {:.3} plain {:.3}; top10 overlap gim {:.2} plain {:.2}; mean edges gim {} plain {} random {}", rg / n as f64, rp / n as f64, og as f64 / n as f64, op as f64 / n as f64, kg / n, kp / n, kr / n);
}
