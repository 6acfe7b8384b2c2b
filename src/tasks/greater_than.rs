//! Greater-than prompts (after Hanna et al. 2023) for any tokenizer: "The war lasted from the
//! year 1732 to the year 17" → a year after 1732. Tokenizers that split numbers into digits
//! (SmolLM2, Llama 3) predict the tens digit next, so the target is the tens digit one above the
//! start year's and the foil the one below (a later year is certain for the first, impossible
//! for the second); tokenizers with two-digit tokens (GPT-2) get the two-digit years
//! `(t+1)u` and `(t−1)u` instead. The corruption starts the span at `XX01`, where every
//! continuation is a later year.

use super::{Candidate, GenStats};
use crate::error::Result;
use crate::rng::Rng;
use crate::tokenizer::Tok;

/// Event nouns (the template id is the index).
pub const NOUNS: [&str; 12] = [
    "war",
    "expedition",
    "drought",
    "siege",
    "dynasty",
    "famine",
    "reign",
    "occupation",
    "strike",
    "voyage",
    "plague",
    "conflict",
];

/// Centuries of the start year (11xx … 17xx, as in the paper).
pub const CENTURIES: [u32; 7] = [11, 12, 13, 14, 15, 16, 17];

/// The prompt of a start year.
pub fn prompt(noun: &str, century: u32, yy: u32) -> String {
    format!("The {noun} lasted from the year {century}{yy:02} to the year {century}")
}

/// The text that continues `prompt` with one token meaning tens digit `d` (and units `u`).
fn continuation(tok: &Tok, prompt: &str, d: u32, u: u32) -> Result<Option<String>> {
    for t in [format!("{d}"), format!("{d}{u}")] {
        if super::continuation_id(tok, prompt, &t)?.is_some() {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// `n` greater-than candidates (before the model filter), seeded: a noun, a century and a start
/// year whose tens digit is 1–8 (so both neighbours exist).
pub fn generate(tok: &Tok, n: usize, seed: u64) -> Result<(Vec<Candidate>, GenStats)> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    let mut stats = GenStats {
        generated: n,
        ..Default::default()
    };
    for _ in 0..n {
        let template = rng.below(NOUNS.len());
        let century = *rng.pick(&CENTURIES);
        let tens = 1 + rng.below(8) as u32;
        let units = rng.below(10) as u32;
        let noun = NOUNS[template];
        let clean = prompt(noun, century, tens * 10 + units);
        let corrupt = prompt(noun, century, 1);
        let (Some(target), Some(foil)) = (
            continuation(tok, &clean, tens + 1, units)?,
            continuation(tok, &clean, tens - 1, units)?,
        ) else {
            stats.skipped_length += 1;
            continue;
        };
        let cand = Candidate {
            clean,
            corrupt,
            target,
            foil,
            template,
            order: None,
            io: None,
            s: None,
            c: None,
            year: Some(century * 100 + tens * 10 + units),
        };
        match super::check_lengths(tok, &cand)? {
            true => out.push(cand),
            false => stats.skipped_length += 1,
        }
    }
    Ok((out, stats))
}
