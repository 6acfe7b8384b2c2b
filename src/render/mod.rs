//! Placeholder rendering (HTML only) until the plotters figures land.

use crate::attribution::Attribution;
use crate::session::views::{esc, visible};
use crate::session::MimeBundle;

fn color(v: f64, max: f64) -> String {
    let x = if max > 0.0 {
        (v / max).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let (r, g, b) = if x >= 0.0 {
        (255.0, 255.0 * (1.0 - x), 255.0 * (1.0 - x))
    } else {
        (255.0 * (1.0 + x), 255.0 * (1.0 + x), 255.0)
    };
    format!("rgb({},{},{})", r as u8, g as u8, b as u8)
}

pub fn tokens_html(tokens: &[String], scores: &[f64], max: f64) -> String {
    let mut h = String::from("<div style=\"font-family:monospace;line-height:2;background:#fff;color:#000;padding:6px\">");
    for (t, v) in tokens.iter().zip(scores) {
        h.push_str(&format!(
            "<span title=\"{:+.4}\" style=\"background:{};padding:2px 1px;margin:0 1px\">{}</span>",
            v,
            color(*v, max),
            esc(&visible(t))
        ));
    }
    h.push_str("</div>");
    h
}

fn maxabs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m: f64, x| m.max(x.abs()))
}

pub fn attribution_bundle(r: &Attribution, text: String, json: serde_json::Value) -> MimeBundle {
    MimeBundle::text(text)
        .with(
            "text/html",
            tokens_html(&r.tokens, &r.attributions, maxabs(&r.attributions)),
        )
        .with("application/json", json)
}

pub fn compare_bundle(
    rs: &[Attribution],
    normalize: bool,
    text: String,
    json: serde_json::Value,
) -> MimeBundle {
    let shared = rs
        .iter()
        .map(|r| maxabs(&r.attributions))
        .fold(0.0, f64::max);
    let mut h = String::new();
    for r in rs {
        let m = if normalize {
            maxabs(&r.attributions)
        } else {
            shared
        };
        h.push_str(&format!(
            "<div><b>{}</b>{}</div>",
            esc(&r.method),
            tokens_html(&r.tokens, &r.attributions, m)
        ));
    }
    MimeBundle::text(text)
        .with("text/html", h)
        .with("application/json", json)
}

pub fn demo_bundle() -> MimeBundle {
    let tokens: Vec<String> = ["The", " capital", " of", " France", " is"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let scores = [0.1, 0.8, -0.2, 1.5, 0.4];
    MimeBundle::text("demo heatmap: The capital of France is → Paris")
        .with("text/html", tokens_html(&tokens, &scores, 1.5))
}
