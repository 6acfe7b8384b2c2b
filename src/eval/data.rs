//! Evaluation examples: JSONL files (the `attribute --batch` format, `gim tasks` output or the toy
//! IOI prompt format)
//! and generated induction prompts.

use std::io::BufRead;

use serde_json::Value;

use crate::attribution::TargetSpec;
use crate::error::{GimError, Result};
use crate::rng::Rng;
use crate::toy::induction_symbols;

/// One prompt to explain: its text, target and optional foil.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalExample {
    /// Prompt text (tokenized with the model's special tokens).
    pub prompt: String,
    pub target: TargetSpec,
    pub contrast: Option<TargetSpec>,
}

/// Which JSON fields hold what, and which lines to keep.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    /// prompt field (default: `prompt`, else `clean`)
    pub prompt: Option<String>,
    /// target text field (default: `target_id`, else `target`, else `io`; none: the top prediction)
    pub target: Option<String>,
    /// contrast text field (default: `contrast_id`, else `contrast`, else `foil`)
    pub contrast: Option<String>,
    /// keep only lines whose field equals the value (`heldout_template=true`)
    pub filter: Vec<(String, String)>,
}

fn text_field(v: &Value, name: &str) -> Option<String> {
    v.get(name).and_then(|x| x.as_str()).map(str::to_string)
}

fn id_field(v: &Value, name: &str) -> Option<u32> {
    v.get(name)
        .and_then(|x| x.as_u64())
        .and_then(|x| u32::try_from(x).ok())
}

fn matches(v: &Value, key: &str, want: &str) -> bool {
    match v.get(key) {
        Some(Value::String(s)) => s == want,
        // numbers and booleans compare as JSON (`heldout_template=true`)
        Some(x) => serde_json::from_str::<Value>(want).is_ok_and(|w| w == *x),
        None => false,
    }
}

fn spec(
    v: &Value,
    explicit: &Option<String>,
    id_key: &str,
    defaults: &[&str],
) -> Option<TargetSpec> {
    if let Some(f) = explicit {
        return text_field(v, f).map(TargetSpec::Text);
    }
    if let Some(i) = id_field(v, id_key) {
        return Some(TargetSpec::Id(i));
    }
    defaults
        .iter()
        .find_map(|k| text_field(v, k))
        .map(TargetSpec::Text)
}

/// Parse one JSONL line (`None` when the filter drops it).
pub fn parse_line(line: &str, fields: &Fields) -> std::result::Result<Option<EvalExample>, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    if !fields.filter.iter().all(|(k, want)| matches(&v, k, want)) {
        return Ok(None);
    }
    parse_value(&v, fields).map(Some)
}

/// One JSON object (already past the filter) → an example.
fn parse_value(v: &Value, fields: &Fields) -> std::result::Result<EvalExample, String> {
    let prompt = match &fields.prompt {
        Some(f) => text_field(v, f).ok_or_else(|| format!("no text field `{f}`"))?,
        None => text_field(v, "prompt")
            .or_else(|| text_field(v, "clean"))
            .ok_or("no \"prompt\" (or \"clean\") text field")?,
    };
    let target =
        spec(v, &fields.target, "target_id", &["target", "io"]).unwrap_or(TargetSpec::Argmax);
    if let (Some(f), TargetSpec::Argmax) = (&fields.target, &target) {
        return Err(format!("no text field `{f}` for the target"));
    }
    let contrast = spec(v, &fields.contrast, "contrast_id", &["contrast", "foil"]);
    if let (Some(f), None) = (&fields.contrast, &contrast) {
        return Err(format!("no text field `{f}` for the contrast"));
    }
    Ok(EvalExample {
        prompt,
        target,
        contrast,
    })
}

/// Read examples from a JSONL file; errors name the file and line.
pub fn read_examples(path: &str, fields: &Fields) -> Result<Vec<EvalExample>> {
    let rows = read_jsonl(path, &fields.filter, |v| parse_value(v, fields))?;
    Ok(rows.rows.into_iter().map(|(_, ex)| ex).collect())
}

/// The kept lines of a JSONL file: each with its 1-based line number, and how many lines the
/// filter dropped.
#[derive(Debug, Clone)]
pub struct JsonlRows<T> {
    pub rows: Vec<(usize, T)>,
    pub filtered_out: usize,
}

/// The longest line [`read_jsonl`] reads.
const MAX_LINE: usize = 16 << 20;

/// Read a JSONL file line by line: skip blank lines, drop the lines `filter` rejects
/// (`FIELD=VALUE`, as `--filter`), parse the rest with `parse`; an error names the file and the
/// line. Never empty: no kept line is an error too. `gim eval` and `gim circuit --data` read
/// their files with this.
pub fn read_jsonl<T>(
    path: &str,
    filter: &[(String, String)],
    mut parse: impl FnMut(&Value) -> std::result::Result<T, String>,
) -> Result<JsonlRows<T>> {
    let f = std::fs::File::open(path)
        .map_err(|e| GimError::input(format!("cannot open {path}: {e}")))?;
    let mut rows = Vec::new();
    let mut filtered_out = 0;
    let mut reader = std::io::BufReader::new(f);
    let mut buf = Vec::new();
    for n in 0.. {
        let at = |e: String| GimError::input(format!("{path} line {}: {e}", n + 1));
        // one line, at most MAX_LINE bytes: a file without line ends (/dev/zero, a binary)
        // is an error, not a read that never ends
        buf.clear();
        let got = std::io::Read::take(&mut reader, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| GimError::input(format!("cannot read {path}: {e}")))?;
        if got == 0 {
            break;
        }
        if buf.len() > MAX_LINE {
            return Err(at(format!(
                "longer than {} MiB: is this a JSONL file (one JSON object per line)?",
                MAX_LINE >> 20
            )));
        }
        let line = std::str::from_utf8(&buf).map_err(|_| at("not UTF-8 text".into()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| at(format!("not JSON ({e})")))?;
        if !v.is_object() {
            return Err(at("not a JSON object".into()));
        }
        if !filter.iter().all(|(k, want)| matches(&v, k, want)) {
            filtered_out += 1;
            continue;
        }
        rows.push((n + 1, parse(&v).map_err(at)?));
    }
    if rows.is_empty() {
        return Err(GimError::input(format!(
            "{path} has no examples{}",
            if filter.is_empty() {
                ""
            } else {
                " that pass the filter"
            }
        )));
    }
    Ok(JsonlRows { rows, filtered_out })
}

/// A text field of a JSONL line: `explicit` if given, else the first of `defaults` present;
/// the error names what is missing.
pub fn text_field_of(
    v: &Value,
    explicit: &Option<String>,
    defaults: &[&str],
) -> std::result::Result<String, String> {
    match explicit {
        Some(f) => text_field(v, f).ok_or_else(|| format!("no text field `{f}`")),
        None => defaults
            .iter()
            .find_map(|k| text_field(v, k))
            .ok_or_else(|| {
                let names: Vec<String> = defaults.iter().map(|d| format!("\"{d}\"")).collect();
                format!("no {} text field", names.join(" or "))
            }),
    }
}

/// Length of the repeated segment of [`induction_examples`].
pub const INDUCTION_SEGMENT: usize = 15;

/// `n` induction prompts `<bos> A A[..=j]` with a random segment `A` of
/// [`INDUCTION_SEGMENT`] syllables, cut after a random token `j` of the second copy; the target is
/// the next token of `A`, which only induction (attending to the token after the earlier
/// occurrence) predicts. The second copy starts right after the first, which is the layout both
/// the embedded toy-induction (trained on exactly this) and models trained on the varying-offset
/// task (`induction_batch`) have seen.
pub fn induction_examples(n: usize, seed: u64) -> Vec<EvalExample> {
    let syms = induction_symbols();
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let seg: Vec<&str> = (0..INDUCTION_SEGMENT)
                .map(|_| rng.pick(&syms[..]).as_str())
                .collect();
            let j = rng.below(INDUCTION_SEGMENT - 1);
            let mut words = seg.clone();
            words.extend(&seg[..=j]);
            EvalExample {
                prompt: words.join(" "),
                target: TargetSpec::Text(format!(" {}", seg[j + 1])),
                contrast: None,
            }
        })
        .collect()
}
