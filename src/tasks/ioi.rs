//! Indirect-object identification prompts for any tokenizer: single-token names (with their
//! leading space), natural templates, and two corruptions that keep the token length.

use super::{Candidate, GenStats, IoiCorruption};
use crate::error::{GimError, Result};
use crate::rng::Rng;
use crate::tokenizer::Tok;

/// Common English first names; the generator keeps those that are one token with a leading space.
pub const NAMES: [&str; 100] = [
    "Mary",
    "John",
    "James",
    "Robert",
    "Michael",
    "William",
    "David",
    "Richard",
    "Joseph",
    "Thomas",
    "Charles",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Paul",
    "Steven",
    "Andrew",
    "Kevin",
    "Brian",
    "George",
    "Edward",
    "Ryan",
    "Jacob",
    "Gary",
    "Eric",
    "Jonathan",
    "Stephen",
    "Larry",
    "Justin",
    "Scott",
    "Frank",
    "Brandon",
    "Raymond",
    "Gregory",
    "Samuel",
    "Patrick",
    "Jack",
    "Dennis",
    "Jerry",
    "Tyler",
    "Aaron",
    "Adam",
    "Henry",
    "Nathan",
    "Peter",
    "Kyle",
    "Walter",
    "Ethan",
    "Jeremy",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Lisa",
    "Nancy",
    "Betty",
    "Sandra",
    "Ashley",
    "Emily",
    "Donna",
    "Michelle",
    "Carol",
    "Amanda",
    "Melissa",
    "Deborah",
    "Laura",
    "Rebecca",
    "Sharon",
    "Cynthia",
    "Kathleen",
    "Amy",
    "Anna",
    "Angela",
    "Helen",
    "Emma",
    "Nicole",
    "Rachel",
    "Alice",
    "Julie",
    "Grace",
    "Victoria",
    "Kate",
    "Lucy",
    "Rose",
    "Tom",
    "Alex",
    "Sam",
    "Ben",
    "Max",
    "Leo",
    "Luke",
    "Jane",
    "Tim",
    "Dan",
];

/// The templates: `{A}` is the indirect object, `{B}` the subject, named twice (the second
/// time as the giver). The generator swaps the first pair (ABBA / BABA) at random.
pub const TEMPLATES: [&str; 15] = [
    "When {A} and {B} went to the store, {B} gave a drink to",
    "Then, {A} and {B} had a long argument. Afterwards {B} said to",
    "After {A} and {B} went to the park, {B} gave a ball to",
    "While {A} and {B} were working at the office, {B} handed a report to",
    "When {A} and {B} got a snack at the cafe, {B} decided to give it to",
    "Friends {A} and {B} found a ring at the beach. {B} gave the ring to",
    "After the lunch, {A} and {B} went to the school. {B} gave a book to",
    "Then, {A} and {B} were thinking about going to the mall. {B} wanted to give a gift to",
    "Since {A} and {B} were cooking at the house, {B} passed a spoon to",
    "When {A} and {B} arrived at the hospital, {B} brought some flowers to",
    "Yesterday {A} and {B} visited the museum, and {B} showed a painting to",
    "At the party, {A} and {B} were talking, and then {B} offered a cake to",
    "While {A} and {B} were walking in the garden, {B} tossed an apple to",
    "After {A} and {B} finished the game, {B} sent a message to",
    "When {A} and {B} met at the station, {B} lent an umbrella to",
];

/// The names of `NAMES` that `tok` encodes as exactly one token with a leading space.
pub fn single_token_names(tok: &Tok) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for n in NAMES {
        if tok.encode(&format!(" {n}"), false)?.len() == 1 {
            out.push(n);
        }
    }
    Ok(out)
}

/// Fill a template: the first pair is (first, second), the giver is `giver`.
pub fn fill(template: &str, first: &str, second: &str, giver: &str) -> String {
    // The first {B} of the template is the second name of the pair, the second {B} the giver.
    let t = template.replacen("{A}", first, 1);
    let t = t.replacen("{B}", second, 1);
    t.replacen("{B}", giver, 1)
}

/// `n` IOI candidates (before the model filter), seeded. Each draws a template, an order
/// (ABBA: IO named first; BABA: subject named first) and distinct names; the target is the
/// indirect object, the foil the subject. Corruption `abc` names a third person as the giver
/// (no name is repeated, so the IO cannot be inferred); `subject` makes the IO the giver (the
/// subject becomes the answer). Candidates whose corrupt prompt tokenizes to a different length,
/// or whose target does not continue the prompt as one token, are skipped and counted.
pub fn generate(
    tok: &Tok,
    n: usize,
    seed: u64,
    corruption: IoiCorruption,
) -> Result<(Vec<Candidate>, GenStats)> {
    let names = single_token_names(tok)?;
    if names.len() < 3 {
        return Err(GimError::input(format!(
            "only {} of the built-in names are one token for this tokenizer; IOI needs at least 3",
            names.len()
        )));
    }
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    let mut stats = GenStats {
        generated: n,
        names: names.len(),
        ..Default::default()
    };
    for _ in 0..n {
        let template = rng.below(TEMPLATES.len());
        let abba = rng.below(2) == 0;
        let io = *rng.pick(&names);
        let s = loop {
            let x = *rng.pick(&names);
            if x != io {
                break x;
            }
        };
        let c = loop {
            let x = *rng.pick(&names);
            if x != io && x != s {
                break x;
            }
        };
        let t = TEMPLATES[template];
        let (first, second) = if abba { (io, s) } else { (s, io) };
        let clean = fill(t, first, second, s);
        let corrupt = match corruption {
            IoiCorruption::Abc => fill(t, first, second, c),
            IoiCorruption::Subject => fill(t, first, second, io),
        };
        let cand = Candidate {
            clean,
            corrupt,
            target: format!(" {io}"),
            foil: format!(" {s}"),
            template,
            order: Some(if abba { "ABBA" } else { "BABA" }.into()),
            io: Some(format!(" {io}")),
            s: Some(format!(" {s}")),
            c: matches!(corruption, IoiCorruption::Abc).then(|| format!(" {c}")),
            year: None,
        };
        match super::check_lengths(tok, &cand)? {
            true => out.push(cand),
            false => stats.skipped_length += 1,
        }
    }
    Ok((out, stats))
}
