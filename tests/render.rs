//! Rendering: SVGs parse with the expected cells/nodes/edges, PNGs decode and are not blank, output
//! is deterministic and matches golden hashes (regenerate with GIM_BLESS=1).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use gim::render::*;
use sha2::{Digest, Sha256};

fn prompt_200() -> TokenScores {
    let words = [
        "The",
        " capital",
        " of",
        " France",
        " is",
        " Paris",
        ",",
        " and",
        " the",
        " Eiffel",
        " tower",
        " stands",
        "\n",
        " café",
        " 中",
        "Ġnaïve",
        "\t",
        "<|endoftext|>",
        " über",
        " résumé",
    ];
    let tokens: Vec<String> = (0..200)
        .map(|i| words[i % words.len()].to_string())
        .collect();
    let scores: Vec<f64> = (0..200)
        .map(|i| ((i as f64) * 0.37).sin() * (1.0 + (i % 7) as f64 * 0.2))
        .collect();
    let mut d = TokenScores::new(tokens, scores, " Paris");
    d.contrast = Some(" London".into());
    d.method = "gim".into();
    d
}

fn comparison() -> Comparison {
    let d = demo_scores();
    let rows = ["gim", "gradient", "integrated-gradients", "occlusion"]
        .iter()
        .enumerate()
        .map(|(k, m)| MethodRow {
            method: m.to_string(),
            scores: d
                .scores
                .iter()
                .enumerate()
                .map(|(i, v)| v * (1.0 + k as f64) * if (i + k) % 3 == 0 { -0.5 } else { 1.0 })
                .collect(),
        })
        .collect();
    Comparison {
        tokens: d.tokens,
        rows,
        target: d.target,
        contrast: None,
    }
}

fn heads() -> HeadScores {
    let mut scores: Vec<Vec<f64>> = (0..12)
        .map(|l| {
            (0..12)
                .map(|h| (((l * 12 + h) as f64) * 0.91).sin() * 0.3)
                .collect()
        })
        .collect();
    scores[9][6] = 1.6; // a name-mover-like head
    scores[10][7] = -0.9;
    scores[5][1] = 0.7;
    HeadScores {
        scores,
        mlp: Some((0..12).map(|l| ((l as f64) * 0.5).cos() * 0.5).collect()),
        title: "Head attribution to ␣Paris".into(),
        top_k: 5,
    }
}

fn pattern() -> AttentionPattern {
    let tokens: Vec<String> = ["<bos>", "The", " capital", " of", " France", " is"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let n = tokens.len();
    let pattern = (0..n)
        .map(|q| {
            let w: Vec<f64> = (0..n)
                .map(|k| {
                    if k <= q {
                        1.0 + ((q * 7 + k * 3) % 5) as f64
                    } else {
                        0.0
                    }
                })
                .collect();
            let s: f64 = w.iter().sum();
            w.iter().map(|v| v / s).collect()
        })
        .collect();
    AttentionPattern {
        tokens,
        pattern,
        layer: 9,
        head: 6,
    }
}

/// A circuit over `layers` layers with `heads_per_layer` heads each, an MLP per layer, 4 embeddings and a logit.
fn circuit(layers: usize, heads_per_layer: usize) -> CircuitGraph {
    let mut nodes = vec![];
    for (i, t) in ["The", " capital", " France", " is"].iter().enumerate() {
        nodes.push(CircuitNode {
            id: format!("emb{i}"),
            label: format!("emb \"{}\"", t.trim()),
            layer: 0,
            kind: NodeKind::Embedding,
        });
    }
    for l in 0..layers {
        for h in 0..heads_per_layer {
            nodes.push(CircuitNode {
                id: format!("a{l}.{h}"),
                label: format!("L{l}H{h}"),
                layer: l,
                kind: NodeKind::Head,
            });
        }
        nodes.push(CircuitNode {
            id: format!("m{l}"),
            label: format!("MLP{l}"),
            layer: l,
            kind: NodeKind::Mlp,
        });
    }
    nodes.push(CircuitNode {
        id: "logit".into(),
        label: "logit \"Paris\"".into(),
        layer: 0,
        kind: NodeKind::Logit,
    });
    let mut edges = vec![];
    let mut k = 0u32;
    let mut score = || {
        k += 1;
        ((k as f64) * 1.7).sin() * (1.0 + (k % 5) as f64)
    };
    for l in 0..layers {
        let srcs: Vec<String> = if l == 0 {
            (0..4).map(|i| format!("emb{i}")).collect()
        } else {
            vec![format!("m{}", l - 1), format!("a{}.0", l - 1)]
        };
        for h in 0..heads_per_layer {
            for s in &srcs {
                edges.push(CircuitEdge {
                    from: s.clone(),
                    to: format!("a{l}.{h}"),
                    score: score(),
                });
            }
            edges.push(CircuitEdge {
                from: format!("a{l}.{h}"),
                to: format!("m{l}"),
                score: score(),
            });
        }
    }
    edges.push(CircuitEdge {
        from: format!("m{}", layers - 1),
        to: "logit".into(),
        score: 5.5,
    });
    edges.push(CircuitEdge {
        from: format!("a{}.1", layers - 1),
        to: "logit".into(),
        score: -4.0,
    });
    CircuitGraph {
        nodes,
        edges,
        title: "Circuit for ␣Paris".into(),
    }
}

fn faithfulness() -> LineChart {
    let fr: [f64; 7] = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0];
    let curve = |name: &str, p: f64| Curve {
        name: name.into(),
        points: fr.iter().map(|x| (*x, 1.0 - x.powf(p))).collect(),
    };
    LineChart {
        log_x: false,
        title: "Deletion curve (lower area = more faithful)".into(),
        x_label: "fraction of tokens removed".into(),
        y_label: "logit (normalised)".into(),
        curves: vec![
            curve("gim", 0.4),
            curve("gradient", 0.8),
            curve("integrated-gradients", 0.6),
            curve("random", 1.0),
        ],
    }
}

fn all_figures() -> Vec<(&'static str, Figure)> {
    let d = demo_scores();
    vec![
        (
            "heatmap",
            token_heatmap(&d, &HeatmapOpts::default()).unwrap(),
        ),
        (
            "heatmap200",
            token_heatmap(&prompt_200(), &HeatmapOpts::default()).unwrap(),
        ),
        (
            "compare",
            compare_heatmap(&comparison(), &CompareOpts::default()).unwrap(),
        ),
        (
            "compare_norm",
            compare_heatmap(
                &comparison(),
                &CompareOpts {
                    normalize_rows: true,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        ("heads", head_heatmap(&heads()).unwrap()),
        ("pattern", attention_pattern(&pattern()).unwrap()),
        (
            "circuit",
            circuit_graph(&circuit(3, 3), &GraphOpts::default()).unwrap(),
        ),
        (
            "circuit60",
            circuit_graph(
                &circuit(5, 10),
                &GraphOpts {
                    top_k: 60,
                    hide_isolated: false,
                },
            )
            .unwrap(),
        ),
        ("faithfulness", line_chart(&faithfulness()).unwrap()),
    ]
}

fn doc(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).expect("SVG is well-formed XML")
}

fn count(svg: &str, tag: &str, attr: &str, value: &str) -> usize {
    doc(svg)
        .descendants()
        .filter(|n| n.has_tag_name(tag) && n.attribute(attr) == Some(value))
        .count()
}

fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(png_bytes);
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    assert_eq!(info.color_type, png::ColorType::Rgb);
    (info.width, info.height, buf)
}

fn distinct_colours(rgb: &[u8]) -> usize {
    rgb.chunks(3)
        .map(|p| (p[0], p[1], p[2]))
        .collect::<BTreeSet<_>>()
        .len()
}

#[test]
fn heatmap_svg_has_one_cell_per_token_and_png_matches_its_size() {
    let d = prompt_200();
    let fig = token_heatmap(&d, &HeatmapOpts::default()).unwrap();
    // Token cells are outlined in the cell border colour; the special token in a darker one.
    let normal = count(&fig.svg, "rect", "stroke", "#B4B4B4");
    let special = count(&fig.svg, "rect", "stroke", "#7A7A7A");
    assert_eq!((normal, special), (190, 10));
    let texts: Vec<String> = doc(&fig.svg)
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect();
    assert!(texts.iter().any(|t| t == "␣Paris"));
    assert!(texts.iter().any(|t| t == "⏎"));
    assert!(
        texts.iter().any(|t| t == "␣\\u{4e2d}"),
        "CJK is escaped, not tofu"
    );
    assert!(texts.iter().any(|t| t == "␣café"));
    assert!(texts
        .iter()
        .any(|t| t == "Attribution to ␣Paris vs ␣London"));
    let (w, h, rgb) = decode(&fig.png);
    assert_eq!((w, h), (fig.width * PNG_SCALE, fig.height * PNG_SCALE));
    assert!(fig.width > 800 && fig.width <= 860, "{}", fig.width);
    assert!(distinct_colours(&rgb) > 200, "{}", distinct_colours(&rgb));
}

#[test]
fn compare_has_rows_times_tokens_cells() {
    let c = comparison();
    let fig = compare_heatmap(&c, &CompareOpts::default()).unwrap();
    let cells =
        count(&fig.svg, "rect", "stroke", "#B4B4B4") + count(&fig.svg, "rect", "stroke", "#7A7A7A");
    assert_eq!(cells, 4 * 6);
    let bad = Comparison {
        rows: vec![MethodRow {
            method: "x".into(),
            scores: vec![1.0],
        }],
        ..c
    };
    assert!(compare_heatmap(&bad, &CompareOpts::default()).is_err());
}

#[test]
fn circuit_svg_has_nodes_and_top_k_edges_without_overlap() {
    let g = circuit(5, 10); // 4 emb + 50 heads + 5 MLPs + 1 logit = 60 nodes
    assert_eq!(g.nodes.len(), 60);
    let fig = circuit_graph(
        &g,
        &GraphOpts {
            top_k: 60,
            hide_isolated: false,
        },
    )
    .unwrap();
    let d = doc(&fig.svg);
    let boxes: Vec<(f64, f64, f64, f64)> = d
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("stroke") == Some("#4A4A4A"))
        .map(|n| {
            let f = |a| n.attribute(a).unwrap().parse::<f64>().unwrap();
            (f("x"), f("y"), f("width"), f("height"))
        })
        .collect();
    assert_eq!(boxes.len(), 60);
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let overlap = a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3;
            assert!(!overlap, "{a:?} overlaps {b:?}");
        }
    }
    // Edges are polylines in the two edge colours (the legend adds one of each).
    let edges = count(&fig.svg, "polyline", "stroke", "#C0392B")
        + count(&fig.svg, "polyline", "stroke", "#2166AC");
    assert_eq!(edges, 60 + 2);
    let small = circuit_graph(
        &g,
        &GraphOpts {
            top_k: 5,
            hide_isolated: true,
        },
    )
    .unwrap();
    let edges = count(&small.svg, "polyline", "stroke", "#C0392B")
        + count(&small.svg, "polyline", "stroke", "#2166AC");
    assert_eq!(edges, 5 + 2);
    let nodes = count(&small.svg, "rect", "stroke", "#4A4A4A");
    assert!((2..=10).contains(&nodes), "{nodes}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    assert!(token_heatmap(
        &TokenScores::new(vec!["a".into()], vec![], "b"),
        &HeatmapOpts::default()
    )
    .is_err());
    let mut g = circuit(1, 1);
    g.edges.push(CircuitEdge {
        from: "nope".into(),
        to: "logit".into(),
        score: 1.0,
    });
    assert!(circuit_graph(&g, &GraphOpts::default()).is_err());
    assert!(head_heatmap(&HeadScores {
        scores: vec![],
        mlp: None,
        title: String::new(),
        top_k: 1
    })
    .is_err());
    assert!(line_chart(&LineChart {
        log_x: false,
        title: String::new(),
        x_label: String::new(),
        y_label: String::new(),
        curves: vec![]
    })
    .is_err());
}

#[test]
fn every_figure_parses_decodes_and_is_not_blank() {
    for (name, fig) in all_figures() {
        doc(&fig.svg);
        let (w, h, rgb) = decode(&fig.png);
        assert_eq!(
            (w, h),
            (fig.width * PNG_SCALE, fig.height * PNG_SCALE),
            "{name}"
        );
        assert!(
            distinct_colours(&rgb) > 50,
            "{name}: {} colours",
            distinct_colours(&rgb)
        );
        assert!(
            fig.svg
                .contains("font-family=\"DejaVu Sans, Verdana, Arial, sans-serif\""),
            "{name}"
        );
    }
}

#[test]
fn rendering_is_deterministic() {
    let a = all_figures();
    let b = all_figures();
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.svg == y.svg, "{name} svg differs");
        assert!(x.png == y.png, "{name} png differs");
    }
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn golden_hashes() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/render.sha256");
    let mut got = String::new();
    for (name, fig) in all_figures() {
        got.push_str(&format!(
            "{}  {name}.svg\n{}  {name}.png\n",
            sha(fig.svg.as_bytes()),
            sha(&fig.png)
        ));
    }
    if std::env::var("GIM_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        let dir = path.parent().unwrap();
        std::fs::write(
            dir.join("heatmap.svg"),
            token_heatmap(&demo_scores(), &HeatmapOpts::default())
                .unwrap()
                .svg,
        )
        .unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .expect("tests/golden/render.sha256 (create with GIM_BLESS=1)");
    assert_eq!(got, want, "rendering changed; look at the pictures, then GIM_BLESS=1 cargo test --release --test render");
    let svg = std::fs::read_to_string(path.parent().unwrap().join("heatmap.svg")).unwrap();
    assert_eq!(
        svg,
        token_heatmap(&demo_scores(), &HeatmapOpts::default())
            .unwrap()
            .svg
    );
}

#[test]
fn bundles_carry_every_mime_type() {
    let b = demo_bundle();
    for m in ["text/plain", "image/svg+xml", "image/png", "text/html"] {
        assert!(b.data.contains_key(m), "{m}");
    }
    assert!(b.plain().contains("Attribution to ␣Paris"));
    let png_b64 = b.data["image/png"].as_str().unwrap();
    use base64::Engine;
    let png_bytes = base64::engine::general_purpose::STANDARD
        .decode(png_b64)
        .unwrap();
    assert_eq!(&png_bytes[1..4], b"PNG");
    assert_eq!(b.metadata["image/png"]["width"], 504);
    let fig = line_chart(&faithfulness()).unwrap();
    let b = bundle(
        "x".into(),
        Some(&fig),
        None,
        Some(serde_json::json!({"a": 1})),
    );
    assert_eq!(b.data[gim::session::RESULT_MIME]["a"], 1);
    assert!(!b.data.contains_key("text/html"));
}

#[test]
fn attribution_prints_evcxr_blocks() {
    let d = demo_scores();
    let a = gim::attribution::Attribution {
        method: "gim".into(),
        model_type: "llama".into(),
        token_ids: (0..d.tokens.len() as u32).collect(),
        tokens: d.tokens.clone(),
        target_id: 7,
        target: d.target.clone(),
        contrast_id: None,
        contrast: None,
        position: 5,
        baseline_id: None,
        attributions: d.scores.clone(),
        target_logit: 3.2,
        objective: "logit".into(),
        settings: gim::model::GimRules::gim(),
        note: None,
    };
    let b = attribution_bundle(&a);
    assert_eq!(b.data[gim::session::RESULT_MIME]["target"], " Paris");
    assert!(b.data.contains_key("image/png") && b.data.contains_key("text/html"));
    let s = a.evcxr_content();
    assert!(s.starts_with("EVCXR_BEGIN_CONTENT text/html\n<div"));
    assert_eq!(s.matches("EVCXR_END_CONTENT").count(), 2);
    assert!(s.contains("EVCXR_BEGIN_CONTENT image/png\niVBOR"));
}

/// Writes every figure to $GIM_RENDER_OUT (default /tmp/gim-render) and prints render times.
#[test]
#[ignore]
fn gallery_and_timings() {
    let out =
        PathBuf::from(std::env::var("GIM_RENDER_OUT").unwrap_or_else(|_| "/tmp/gim-render".into()));
    std::fs::create_dir_all(&out).unwrap();
    for (name, fig) in all_figures() {
        std::fs::write(out.join(format!("{name}.png")), &fig.png).unwrap();
        std::fs::write(out.join(format!("{name}.svg")), &fig.svg).unwrap();
    }
    std::fs::write(out.join("demo.html"), token_html(&demo_scores(), None)).unwrap();
    std::fs::write(out.join("tokens200.html"), token_html(&prompt_200(), None)).unwrap();
    let d = prompt_200();
    let g = circuit(5, 10);
    // Min and median of 20 runs: the minimum is the least disturbed by other load on the machine.
    let time = |label: &str, f: &dyn Fn() -> Figure| {
        f();
        let mut ms: Vec<f64> = (0..20)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "{label}: min {:.1} ms, median {:.1} ms (SVG + PNG)",
            ms[0], ms[10]
        );
    };
    time("200-token heatmap", &|| {
        token_heatmap(&d, &HeatmapOpts::default()).unwrap()
    });
    time("60-node circuit graph", &|| {
        circuit_graph(
            &g,
            &GraphOpts {
                top_k: 60,
                hide_isolated: false,
            },
        )
        .unwrap()
    });
    time("12x12 head heatmap", &|| head_heatmap(&heads()).unwrap());
    time("demo bundle", &|| {
        demo_bundle();
        token_heatmap(&demo_scores(), &HeatmapOpts::default()).unwrap()
    });
}
