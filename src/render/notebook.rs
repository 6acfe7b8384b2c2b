//! Figures as notebook outputs: MIME bundles for magics and evcxr's display protocol for library use.

use base64::Engine;
use serde_json::Value;

use super::bundle::MimeBundle;
use super::html::token_html;
use super::tokens::{token_heatmap, HeatmapOpts, TokenScores};
use super::Figure;
use crate::attribution::Attribution;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A bundle with `text/plain`, and where given `image/svg+xml`, `image/png` (base64, shown at the
/// figure's logical size), `text/html` and the result's JSON (under `RESULT_MIME`).
pub fn bundle(
    text: String,
    fig: Option<&Figure>,
    html: Option<String>,
    json: Option<Value>,
) -> MimeBundle {
    let mut b = MimeBundle::text(text);
    if let Some(f) = fig {
        b = b
            .with("image/svg+xml", f.svg.clone())
            .with("image/png", b64(&f.png));
        b.metadata.insert(
            "image/png".into(),
            serde_json::json!({ "width": f.width, "height": f.height }),
        );
    }
    if let Some(h) = html {
        b = b.with("text/html", h);
    }
    if let Some(j) = json {
        b = b.with_result(j);
    }
    b
}

/// A fixed sample: "The capital of France is" → " Paris", with made-up scores.
pub fn demo_scores() -> TokenScores {
    let tokens = ["<bos>", "The", " capital", " of", " France", " is"];
    let scores = [0.05, -0.12, 0.86, 0.09, 2.31, 0.44];
    TokenScores {
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
        scores: scores.to_vec(),
        target: " Paris".into(),
        contrast: None,
        method: "gim (sample data)".into(),
    }
}

/// Plain-text list of the sample's tokens and scores (the demo has no [`Attribution`]: results'
/// tables are [`super::attribution_table`]).
fn demo_text(d: &TokenScores) -> String {
    let mut s = format!("{}\n", d.title());
    for (t, v) in d.tokens.iter().zip(&d.scores) {
        s.push_str(&format!("{:>+10.4}  {:?}\n", v, t));
    }
    s
}

/// The sample heatmap as one bundle (text/plain, image/svg+xml, image/png, text/html) for `%gim demo`.
pub fn demo_bundle() -> MimeBundle {
    let d = demo_scores();
    let text = demo_text(&d);
    let html = token_html(&d, None);
    match token_heatmap(&d, &HeatmapOpts::default()) {
        Ok(fig) => bundle(text, Some(&fig), Some(html), None),
        // Drawing fixed data cannot fail short of a broken build; still show the text and HTML.
        Err(_) => bundle(text, None, Some(html), None),
    }
}

/// An attribution as a cell result: plain table, heatmap (SVG + PNG), HTML token view and the
/// result itself as JSON (under `RESULT_MIME`).
pub fn attribution_bundle(a: &Attribution) -> MimeBundle {
    let d = TokenScores::from(a);
    let fig = token_heatmap(&d, &HeatmapOpts::default()).ok();
    let json = serde_json::to_value(a).ok();
    bundle(
        super::attribution_table(a),
        fig.as_ref(),
        Some(token_html(&d, None)),
        json,
    )
}

impl Attribution {
    /// Print this result in evcxr's display protocol (HTML token view + PNG heatmap), so it renders
    /// inline when it is the value of an evcxr cell.
    pub fn evcxr_display(&self) {
        print!("{}", self.evcxr_content());
    }

    /// The text [`Attribution::evcxr_display`] prints.
    pub fn evcxr_content(&self) -> String {
        let d = TokenScores::from(self);
        let mut s = format!(
            "EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT\n",
            token_html(&d, None)
        );
        if let Ok(fig) = token_heatmap(&d, &HeatmapOpts::default()) {
            s.push_str(&format!(
                "EVCXR_BEGIN_CONTENT image/png\n{}\nEVCXR_END_CONTENT\n",
                b64(&fig.png)
            ));
        }
        s
    }
}
