//! The token view as HTML: inline spans with the score as a tooltip, readable in light and dark
//! notebook themes (the container and every span set both background and text colour).

use super::axes::fmt_score;
use super::color::{diverging, symmetric_limit};
use super::text::display_token;
use super::tokens::TokenScores;

/// Escape text for HTML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Tokens as coloured inline spans in a neutral white card, a tooltip per token (`title`), and a
/// colour legend. `limit` overrides the symmetric colour limits (default max |score|).
pub fn token_html(data: &TokenScores, limit: Option<f64>) -> String {
    let lim = limit.unwrap_or_else(|| symmetric_limit(data.scores.iter().copied()));
    let mut h = String::new();
    h.push_str(
        "<div class=\"gim-tokens\" style=\"background:#ffffff;color:#1a1a1a;padding:10px 12px;\
         border:1px solid #d0d0d0;border-radius:6px;font-family:'DejaVu Sans',Verdana,Arial,sans-serif;\
         font-size:13px;line-height:2.1;max-width:100%;\">",
    );
    h.push_str(&format!(
        "<div style=\"font-weight:bold;line-height:1.4;\">{}</div>",
        escape(&data.title())
    ));
    if !data.method.is_empty() {
        h.push_str(&format!(
            "<div style=\"color:#555555;font-size:11px;line-height:1.4;margin-bottom:4px;\">method {}</div>",
            escape(&data.method)
        ));
    }
    h.push_str("<div>");
    for (i, (tok, v)) in data.tokens.iter().zip(&data.scores).enumerate() {
        let bg = diverging(*v, lim);
        h.push_str(&format!(
            "<span title=\"#{i} {} · {}\" style=\"background:{};color:{};padding:2px 3px;margin:0 1px;\
             border-radius:3px;border:1px solid #b4b4b4;white-space:pre;display:inline-block;line-height:1.35;margin-bottom:3px;\">{}</span>",
            escape(&format!("{tok:?}")),
            escape(&fmt_score(*v, lim, true)),
            bg.hex(),
            bg.text_on().hex(),
            escape(&display_token(tok)),
        ));
    }
    h.push_str("</div>");
    // Legend: the colour scale as a CSS gradient with its limits.
    let stops: Vec<String> = (0..=10)
        .map(|i| diverging(-lim + 2.0 * lim * f64::from(i) / 10.0, lim).hex())
        .collect();
    h.push_str(&format!(
        "<div style=\"display:flex;align-items:center;gap:6px;font-size:11px;color:#555555;line-height:1.4;margin-top:4px;\">\
         <span>{}</span><span style=\"display:inline-block;width:160px;height:10px;border:1px solid #c8c8c8;\
         background:linear-gradient(to right,{});\"></span><span>{}</span></div>",
        escape(&fmt_score(-lim, lim, false)),
        stops.join(","),
        escape(&fmt_score(lim, lim, true)),
    ));
    h.push_str("</div>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_carry_colour_tooltip_and_escaped_text() {
        let d = TokenScores::new(vec!["<s>".into(), " a&b".into()], vec![0.0, -2.0], " x");
        let h = token_html(&d, None);
        assert_eq!(h.matches("<span title=").count(), 2);
        assert!(h.contains("&lt;s&gt;"));
        assert!(h.contains("␣a&amp;b"));
        assert!(h.contains("title=\"#1 &quot; a&amp;b&quot; · −2.00\""));
        assert!(h.contains("background:#053061;color:#ffffff"));
        assert!(h.contains("background:#f7f7f7;color:#1a1a1a"));
    }
}
