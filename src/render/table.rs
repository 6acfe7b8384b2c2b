//! Results as plain-text tables (the CLI's output and the `text/plain` of magics).

use crate::attribution::Attribution;

/// A short text table of an attribution: a header line (method, target, position, objective and
/// its value), one row per token, and the method's note.
pub fn attribution_table(r: &Attribution) -> String {
    let mut s = format!(
        "{} attribution of {:?} (id {}){} at position {} — {} = {:.4}\n",
        r.method,
        r.target,
        r.target_id,
        r.contrast
            .as_ref()
            .map(|c| format!(" vs {c:?}"))
            .unwrap_or_default(),
        r.position,
        r.objective,
        r.target_logit
    );
    for (i, (t, v)) in r.tokens.iter().zip(&r.attributions).enumerate() {
        s.push_str(&format!("{i:>4}  {:<20} {v:>+10.5}\n", format!("{t:?}")));
    }
    if let Some(n) = &r.note {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}
