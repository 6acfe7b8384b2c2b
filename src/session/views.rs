//! Turning results into display bundles (text, HTML, JSON and — through `render` — pictures).
//! Views never compute; they only format.

use serde::Serialize;

use super::MimeBundle;
use crate::attribution::Attribution;
use crate::render;

/// One row of `%gim top`.
#[derive(Debug, Clone, Serialize)]
pub struct TopRow {
    pub id: u32,
    pub token: String,
    pub logit: f64,
    pub prob: f64,
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Visible whitespace for token display.
pub fn visible(tok: &str) -> String {
    tok.replace(' ', "␣").replace('\n', "⏎").replace('\t', "⇥")
}

fn table_html(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut h = String::from("<table class=\"gim-table\" style=\"border-collapse:collapse;font-family:monospace\"><thead><tr>");
    for c in head {
        h.push_str(&format!(
            "<th style=\"text-align:left;padding:2px 10px\">{}</th>",
            esc(c)
        ));
    }
    h.push_str("</tr></thead><tbody>");
    for r in rows {
        h.push_str("<tr>");
        for c in r {
            h.push_str(&format!("<td style=\"padding:2px 10px\">{}</td>", esc(c)));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// An attribution: text table, HTML token view, heatmap picture and the result as JSON.
pub use crate::render::attribution_bundle;

/// Several methods on one prompt: one figure, a row per method.
pub fn compare_bundle(rs: &[Attribution], normalize: bool) -> MimeBundle {
    let mut text = String::new();
    let mut html = String::new();
    let shared = rs
        .iter()
        .flat_map(|r| r.attributions.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    for r in rs {
        text.push_str(&render::attribution_table(r));
        text.push('\n');
        let d = render::TokenScores::from(r);
        html.push_str(&render::token_html(
            &d,
            if normalize { None } else { Some(shared) },
        ));
    }
    let c = render::Comparison::from_attributions(rs);
    let opts = render::CompareOpts {
        normalize_rows: normalize,
        ..Default::default()
    };
    let fig = c.ok().and_then(|c| render::compare_heatmap(&c, &opts).ok());
    render::bundle(text, fig.as_ref(), Some(html), Some(json(&rs)))
}

pub fn tokens_bundle(rows: &[(u32, String, String)]) -> MimeBundle {
    let mut text = format!("{} tokens\n", rows.len());
    for (i, (id, piece, t)) in rows.iter().enumerate() {
        text.push_str(&format!("{i:>4}  {id:>7}  {piece:<16} {t:?}\n"));
    }
    let trs: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, (id, piece, t))| vec![i.to_string(), id.to_string(), piece.clone(), visible(t)])
        .collect();
    let j: Vec<_> = rows
        .iter()
        .map(|(id, p, t)| serde_json::json!({"id": id, "piece": p, "text": t}))
        .collect();
    MimeBundle::text(text)
        .with("text/html", table_html(&["#", "id", "piece", "text"], &trs))
        .with_result(serde_json::Value::Array(j))
}

pub fn top_bundle(rows: &[TopRow]) -> MimeBundle {
    let mut text = String::from("rank  token                 id      logit    prob\n");
    for (i, r) in rows.iter().enumerate() {
        text.push_str(&format!(
            "{:>4}  {:<20} {:>7} {:>9.4} {:>7.4}\n",
            i + 1,
            format!("{:?}", r.token),
            r.id,
            r.logit,
            r.prob
        ));
    }
    let trs: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                (i + 1).to_string(),
                visible(&r.token),
                r.id.to_string(),
                format!("{:.4}", r.logit),
                format!("{:.4}", r.prob),
            ]
        })
        .collect();
    MimeBundle::text(text)
        .with(
            "text/html",
            table_html(&["rank", "token", "id", "logit", "prob"], &trs),
        )
        .with_result(json(&rows))
}

/// The sample heatmap of `%gim demo`.
pub fn demo_bundle() -> MimeBundle {
    crate::render::demo_bundle()
}

/// Show a figure as its own display bundle, then return the text (as plain text and an HTML
/// `<pre>`, so notebooks show both) with the result as JSON.
pub fn figure_then_text(
    out: &mut dyn super::Output,
    fig: Option<&render::Figure>,
    text: String,
    json: serde_json::Value,
) -> MimeBundle {
    if let Some(f) = fig {
        let first = text.lines().next().unwrap_or("figure").to_string();
        out.display(render::bundle(first, Some(f), None, None), None);
    }
    let html = text_html(&text);
    MimeBundle::text(text)
        .with("text/html", html)
        .with_result(json)
}

/// A magic's text as HTML: its markdown tables (a `|` row, a `|---|` row, then `|` rows, as the
/// CLI prints them) as HTML tables, every other line as preformatted text; so that JupyterLab
/// shows a data-set study's table as a table, and the text/plain stays what the CLI prints.
pub fn text_html(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut html = String::from("<div class=\"gim-text\" style=\"font-size:12px\">");
    let mut pre: Vec<&str> = Vec::new();
    // a block of text lines, without the blank lines around it
    let flush = |html: &mut String, pre: &mut Vec<&str>| {
        let text = |l: &&str| !l.trim().is_empty();
        if let (Some(a), Some(b)) = (pre.iter().position(text), pre.iter().rposition(text)) {
            html.push_str(&format!(
                "<pre style=\"margin:4px 0;white-space:pre-wrap;word-break:normal\">{}</pre>",
                esc(&pre[a..=b].join("\n"))
            ));
        }
        pre.clear();
    };
    let mut i = 0;
    while let Some(line) = lines.get(i) {
        match markdown_table(&lines, i) {
            Some((head, rows, next)) => {
                flush(&mut html, &mut pre);
                let head: Vec<&str> = head.iter().map(String::as_str).collect();
                html.push_str(&table_html(&head, &rows));
                i = next;
            }
            None => {
                pre.push(line);
                i += 1;
            }
        }
    }
    flush(&mut html, &mut pre);
    html.push_str("</div>");
    html
}

/// The cells of a markdown table row (`| a | b |`), or `None` for another line.
fn md_cells(line: &str) -> Option<Vec<String>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(|c| c.trim().to_string()).collect())
}

/// The markdown table that starts at line `at`: its header, its rows (those with the header's
/// number of cells) and the index of the line after it.
fn markdown_table(lines: &[&str], at: usize) -> Option<(Vec<String>, Vec<Vec<String>>, usize)> {
    let head = md_cells(lines.get(at)?)?;
    let rule = md_cells(lines.get(at + 1)?)?;
    let is_rule = |c: &String| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':');
    if rule.len() != head.len() || !rule.iter().all(is_rule) {
        return None;
    }
    let mut rows = Vec::new();
    let mut i = at + 2;
    while let Some(r) = lines.get(i).and_then(|l| md_cells(l)) {
        if r.len() != head.len() {
            break;
        }
        rows.push(r);
        i += 1;
    }
    Some((head, rows, i))
}

/// A continuation: the prompt in grey, the model's text after it (growing while `done` is false).
pub fn generation_bundle(g: &crate::generate::Generation, done: bool) -> MimeBundle {
    let mark = if done { "" } else { " …" };
    let text = format!("{}{}{mark}", g.prompt, g.text);
    let html = format!(
        "<div class=\"gim-generation\" style=\"font-family:monospace;white-space:pre-wrap\">\
         <span style=\"color:#777\">{}</span><b>{}</b>{}</div>",
        esc(&g.prompt),
        esc(&g.text),
        esc(mark)
    );
    let b = MimeBundle::text(text).with("text/html", html);
    if done {
        b.with_result(json(g))
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_tables_become_html_tables_and_the_rest_stays_text() {
        let text = "circuits over a data set: <metric> & more\n\n\
                    | method | CPR ↑ |\n|---|---|\n| gim | 1.788 [1.689, 1.899] |\n| a<b | 0.321 |\n\n\
                    faithfulness | not a row\n| x | y |\n| no rule | here |\n";
        let h = text_html(text);
        assert_eq!(h.matches("<table").count(), 1, "{h}");
        assert_eq!(h.matches("<tr>").count(), 3, "header and two rows: {h}");
        assert!(h.contains("<th style=\"text-align:left;padding:2px 10px\">CPR ↑</th>"));
        assert!(h.contains(">1.788 [1.689, 1.899]</td>"));
        // everything is escaped, in the cells and in the text
        assert!(h.contains(">a&lt;b</td>") && h.contains("&lt;metric&gt; &amp; more"));
        // lines that are not a table (no rule row under them) stay preformatted, in order
        let pre = h.find("faithfulness | not a row\n| x | y |\n| no rule | here |</pre>");
        assert!(
            pre.is_some_and(|p| p > h.find("</table>").unwrap_or(usize::MAX)),
            "{h}"
        );
        // blank lines around a table make no empty blocks
        assert!(!h.contains("\"></pre>"));
        assert_eq!(h.matches("<pre").count(), 2);
    }
}
