//! What the toy tasks share beyond training: the induction task's symbols, used by the
//! training data (`train::tasks`) and by the generated evaluation prompts (`eval::data`).

/// Syllable symbols `ba be bi bo bu da ...`.
pub fn induction_symbols() -> Vec<String> {
    let cons = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t"];
    let vows = ["a", "e", "i", "o"];
    cons.iter()
        .flat_map(|c| vows.iter().map(move |v| format!("{c}{v}")))
        .collect()
}
