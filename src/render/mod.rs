//! Pictures and HTML for results: token heatmaps, method comparisons, layer × head maps, attention
//! patterns, circuit graphs and faithfulness curves, each as SVG and PNG with the same layout.
//!
//! Rendering takes plain data (scores, tokens, graphs) and never computes attributions. Every
//! figure is first laid out as a list of shapes ([`scene`]) and then drawn through plotters' SVG
//! and bitmap backends with the bundled DejaVu Sans font, so output is byte-identical across
//! machines and runs.
//!
//! ```no_run
//! use gim::render::{token_heatmap, HeatmapOpts, TokenScores};
//! let data = TokenScores::new(vec!["The".into(), " capital".into()], vec![0.1, 0.7], " Paris");
//! let fig = token_heatmap(&data, &HeatmapOpts::default()).unwrap();
//! std::fs::write("heatmap.png", &fig.png).unwrap();
//! ```

mod axes;
mod bars;
mod bundle;
mod circuit;
mod color;
mod curves;
mod faithfulness;
mod graph;
mod heads;
mod html;
mod notebook;
mod scene;
mod table;
mod text;
mod tokens;

pub use bars::{bar_chart, BarChart, BarPanel};
pub use bundle::{new_display_id, MimeBundle, RESULT_MIME};
pub use circuit::{
    circuit_figure, circuit_summary, dataset_chart, dataset_figure, dataset_table, edge_graph,
};
pub use color::{diverging, sequential, Rgb};
pub use curves::{line_chart, Curve, LineChart};
pub use faithfulness::{
    faithfulness_bundle, faithfulness_chart, faithfulness_html, faithfulness_table,
};
pub use graph::{circuit_graph, CircuitEdge, CircuitGraph, CircuitNode, GraphOpts, NodeKind};
pub use heads::{attention_pattern, head_heatmap, AttentionPattern, HeadScores};
pub use html::token_html;
pub use notebook::{attribution_bundle, bundle, demo_bundle, demo_scores};
pub use scene::PNG_SCALE;
pub use table::attribution_table;
pub use text::{display_token, escape_missing, has_glyph, text_width};
pub use tokens::{
    compare_heatmap, token_heatmap, CompareOpts, Comparison, HeatmapOpts, MethodRow, TokenScores,
};

/// A rendered figure: the same picture as SVG text and as PNG bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    pub svg: String,
    pub png: Vec<u8>,
    /// Logical size in CSS pixels (the SVG's size).
    pub width: u32,
    pub height: u32,
    /// The PNG holds `png_scale` device pixels per logical pixel.
    pub png_scale: u32,
}
