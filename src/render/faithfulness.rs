//! Faithfulness results ([`crate::eval`]) as a text table, an HTML table, a bar chart and a
//! notebook bundle.

use super::bars::{bar_chart, BarChart, BarPanel};
use super::bundle::MimeBundle;
use super::html::escape;
use super::notebook::bundle;
use super::Figure;
use crate::error::Result;
use crate::eval::{EvalRun, MethodSummary, Stat};

fn cell(s: &Stat) -> String {
    match (s.mean.is_finite(), s.ci95.is_finite()) {
        (false, _) => "n/a".into(),
        (true, false) => format!("{:.3}", s.mean),
        (true, true) => format!("{:.3} ± {:.3}", s.mean, s.ci95),
    }
}

fn heading(run: &EvalRun) -> String {
    format!(
        "faithfulness of {} methods on {} of {} examples ({}), metric {}{}",
        run.methods.len(),
        run.n_done,
        run.n_examples,
        run.model_type,
        run.metric,
        if run.interrupted { ", interrupted" } else { "" }
    )
}

fn footnote(run: &EvalRun) -> String {
    format!(
        "mean ± 1.96·sd/√n; {}; drops f(x) − f(x patched) normalised by |f(x)|",
        run.metric.formula()
    )
}

/// The summary as aligned text: mean ± 95% CI per method and metric.
pub fn faithfulness_table(run: &EvalRun) -> String {
    let w = run
        .summary
        .iter()
        .map(|s| s.method.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut t = format!("{}\n", heading(run));
    t.push_str(&format!(
        "{:<w$}  {:>4}  {:<22}  {:<22}\n",
        "method", "n", "comprehensiveness ↑", "sufficiency ↓"
    ));
    for s in &run.summary {
        t.push_str(&format!(
            "{:<w$}  {:>4}  {:<22}  {:<22}\n",
            s.method,
            s.comprehensiveness.n,
            cell(&s.comprehensiveness),
            cell(&s.sufficiency)
        ));
    }
    t.push_str(&format!("{}\n", footnote(run)));
    if let Some(n) = &run.note {
        t.push_str(&format!("note: {n}\n"));
    }
    t
}

/// The summary as a small HTML table on a white card (readable in dark notebook themes).
pub fn faithfulness_html(run: &EvalRun) -> String {
    let td = "style=\"padding:2px 10px;text-align:right;font-variant-numeric:tabular-nums\"";
    let mut h = String::from(
        "<div style=\"background:#ffffff;color:#1a1a1a;padding:10px 12px;border:1px solid #d0d0d0;\
         border-radius:6px;font-family:'DejaVu Sans',Verdana,Arial,sans-serif;font-size:13px;\">",
    );
    h.push_str(&format!(
        "<div style=\"font-weight:bold;margin-bottom:6px\">{}</div>",
        escape(&heading(run))
    ));
    h.push_str(&format!(
        "<table style=\"border-collapse:collapse;color:#1a1a1a\"><tr><th style=\"text-align:left;padding:2px 10px\">method</th>\
         <th {td}>n</th><th {td}>comprehensiveness ↑</th><th {td}>sufficiency ↓</th></tr>"
    ));
    for s in &run.summary {
        h.push_str(&format!(
            "<tr style=\"border-top:1px solid #e0e0e0\"><td style=\"padding:2px 10px\">{}</td><td {td}>{}</td><td {td}>{}</td><td {td}>{}</td></tr>",
            escape(&s.method),
            s.comprehensiveness.n,
            escape(&cell(&s.comprehensiveness)),
            escape(&cell(&s.sufficiency))
        ));
    }
    h.push_str(&format!(
        "</table><div style=\"color:#555555;font-size:11px;margin-top:6px\">{}{}</div></div>",
        escape(&footnote(run)),
        run.note
            .as_ref()
            .map(|n| format!("<br>note: {}", escape(n)))
            .unwrap_or_default()
    ));
    h
}

/// Comprehensiveness and sufficiency per method as two bar panels with 95% CI whiskers.
pub fn faithfulness_chart(summary: &[MethodSummary], title: &str) -> Result<Figure> {
    let panel = |name: &str, f: fn(&MethodSummary) -> Stat| BarPanel {
        title: name.to_string(),
        values: summary.iter().map(|s| f(s).mean).collect(),
        errors: summary.iter().map(|s| f(s).ci95).collect(),
    };
    bar_chart(&BarChart {
        title: title.to_string(),
        subtitle: "mean normalised logit drop, whiskers: 95% CI".into(),
        categories: summary.iter().map(|s| s.method.clone()).collect(),
        panels: vec![
            panel("comprehensiveness ↑", |s| s.comprehensiveness),
            panel("sufficiency ↓", |s| s.sufficiency),
        ],
    })
}

/// A cell result: text table, chart (SVG + PNG), HTML table and the run as JSON.
pub fn faithfulness_bundle(run: &EvalRun) -> MimeBundle {
    let fig = faithfulness_chart(&run.summary, &heading(run)).ok();
    bundle(
        faithfulness_table(run),
        fig.as_ref(),
        Some(faithfulness_html(run)),
        serde_json::to_value(run).ok(),
    )
}
