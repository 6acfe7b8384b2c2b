//! Circuit tools against real patching: sanity on every family, ground truth on the toy models.

mod common;
use common::*;

use gim::circuit::*;
use gim::model::GimRules;

fn problem(m: &gim::LoadedModel, clean: &str, corrupt: &str, target: &str, foil: &str) -> Problem {
    let t = m.tok.encode(target, false).unwrap()[0];
    let f = m.tok.encode(foil, false).unwrap()[0];
    Problem {
        clean: m.tok.encode(clean, true).unwrap(),
        corrupt: Corruption::Prompt(m.tok.encode(corrupt, true).unwrap()),
        target: t,
        foil: Some(f),
    }
}

#[test]
fn patching_everything_reproduces_the_corrupt_run_on_every_family() {
    for arch in ARCHS {
        let m = gim::load(model_dir(arch).to_str().unwrap(), &Default::default()).unwrap();
        let clean: Vec<u32> = vec![57, 260, 80, 372, 294, 340, 273, 84, 278, 11, 300];
        let mut corrupt = clean.clone();
        corrupt[3] = 101;
        corrupt[8] = 202;
        let p = Problem { clean, corrupt: Corruption::Prompt(corrupt), target: 372, foil: Some(340) };
        let clean = sender_acts(&m, &p.clean).unwrap();
        let corr = corrupt_acts(&m, &p, &clean).unwrap();
        let ea = edge_attribution(&m, &p, GimRules::gim()).unwrap();
        let all: Vec<(Node, Receiver)> = ea.edges.iter().map(|e| (e.from, e.to)).collect();
        let m_all = patch_edges(&m, &p, &corr, &all).unwrap();
        let m_none = patch_edges(&m, &p, &corr, &[]).unwrap();
        assert!((m_none - ea.metric_clean).abs() < 1e-4, "{arch}: no patch {m_none} vs clean {}", ea.metric_clean);
        assert!((m_all - ea.metric_corrupt).abs() < 1e-3 * ea.metric_corrupt.abs().max(1.0), "{arch}: all edges {m_all} vs corrupt {}", ea.metric_corrupt);
        let nodes = Node::all(m.model.cfg.n_layers, m.model.cfg.n_heads);
        let m_nodes = patch_nodes(&m, &p, &nodes).unwrap();
        assert!((m_nodes - ea.metric_corrupt).abs() < 1e-4 * ea.metric_corrupt.abs().max(1.0), "{arch}: all nodes");
    }
}
