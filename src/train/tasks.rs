//! The toy tasks with known mechanisms: induction and indirect-object identification (IOI).

use serde::Serialize;

use crate::rng::Rng;
pub use crate::toy::induction_symbols;

pub const SPECIALS: [&str; 3] = ["<pad>", "<unk>", "<bos>"];
pub const PAD: u32 = 0;
pub const BOS: u32 = 2;

/// A word-level vocabulary: specials first, then the task's words.
#[derive(Debug, Clone)]
pub struct Vocab {
    pub words: Vec<String>,
}

impl Vocab {
    pub fn new(task_words: &[String]) -> Self {
        let mut words: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        for w in task_words {
            if !words.contains(w) {
                words.push(w.clone());
            }
        }
        Vocab { words }
    }
    pub fn id(&self, w: &str) -> u32 {
        self.words.iter().position(|x| x == w).unwrap_or(1) as u32
    }
    pub fn len(&self) -> usize {
        self.words.len()
    }
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
    /// Ids of a whitespace-separated text (punctuation must be space-separated too), BOS first.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut v = vec![BOS];
        v.extend(split_words(text).iter().map(|w| self.id(w)));
        v
    }
}

/// Words as the tokenizer's `Whitespace` pre-tokenizer splits them (`\w+|[^\w\s]+`).
pub fn split_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_word: Option<bool> = None;
    for c in text.chars() {
        if c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur_word = None;
            continue;
        }
        let is_word = c.is_alphanumeric() || c == '_';
        if cur_word.is_some() && cur_word != Some(is_word) && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
        cur_word = Some(is_word);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One training/evaluation batch: ids `[b][s]` and, per row, (position, target) pairs for the loss.
pub struct Batch {
    pub ids: Vec<Vec<u32>>,
    pub targets: Vec<Vec<(usize, u32)>>,
}

// ---------------------------------------------------------------- induction

/// Length of every induction training row (BOS included).
pub const INDUCTION_LEN: usize = 32;

/// `<bos> noise A noise A noise`, with a repeated segment `A` of random length at random offsets:
/// the tokens of the second `A` after its first are predictable only by induction (a fixed
/// positional offset does not work because the offsets vary).
pub fn induction_batch(v: &Vocab, rng: &mut Rng, b: usize) -> Batch {
    let syms = induction_symbols();
    let mut ids = Vec::with_capacity(b);
    let mut targets = Vec::with_capacity(b);
    let sym = |rng: &mut Rng| v.id(rng.pick(&syms[..]).as_str());
    for _ in 0..b {
        let l = 4 + rng.below(9); // 4..=12
        let n0 = rng.below(5);
        let n1 = rng.below(5);
        let seg: Vec<u32> = (0..l).map(|_| sym(rng)).collect();
        let mut row = vec![BOS];
        row.extend((0..n0).map(|_| sym(rng)));
        row.extend(&seg);
        row.extend((0..n1).map(|_| sym(rng)));
        let second = row.len();
        row.extend(&seg);
        while row.len() < INDUCTION_LEN {
            row.push(sym(rng));
        }
        row.truncate(INDUCTION_LEN);
        // position p predicts row[p + 1]: the second copy's tokens after its first
        let t = (second..second + l - 1)
            .filter(|&p| p + 1 < row.len())
            .map(|p| (p, row[p + 1]))
            .collect();
        ids.push(row);
        targets.push(t);
    }
    Batch { ids, targets }
}

// ---------------------------------------------------------------- IOI

pub const IOI_NAMES: [&str; 12] = [
    "Mary", "John", "Kate", "Tom", "Anna", "Paul", "Lucy", "Mark", "Emma", "Jack", "Sara", "Dave",
];
pub const IOI_PLACES: [&str; 6] = ["store", "park", "school", "office", "garden", "station"];
pub const IOI_OBJECTS: [&str; 6] = ["drink", "book", "ball", "letter", "gift", "key"];

/// Templates: `{A}` `{B}` the two names in order, `{S}` the repeated subject, `{P}` place, `{O}` object.
pub const IOI_TRAIN_TEMPLATES: [&str; 6] = [
    "When {A} and {B} went to the {P} , {S} gave a {O} to",
    "After {A} and {B} went to the {P} , {S} gave a {O} to",
    "While {A} and {B} were at the {P} , {S} handed a {O} to",
    "Then {A} and {B} had a long day at the {P} , and {S} gave a {O} to",
    "Friends {A} and {B} found a {O} at the {P} . {S} gave it to",
    "When {A} and {B} got a {O} at the {P} , {S} decided to give it to",
];
pub const IOI_HELDOUT_TEMPLATES: [&str; 2] = [
    "Since {A} and {B} were working at the {P} , {S} passed a {O} to",
    "As {A} and {B} walked to the {P} , {S} offered a {O} to",
];

/// One IOI prompt with its answer, the repeated subject and counterfactuals.
#[derive(Debug, Clone, Serialize)]
pub struct IoiExample {
    pub template: usize,
    pub heldout_template: bool,
    /// e.g. "When Mary and John went to the store , John gave a drink to"
    pub clean: String,
    /// " Mary"
    pub io: String,
    /// " John"
    pub s: String,
    /// the subject's second mention replaced by a third name ("ABC"): no answer is implied
    pub corrupt_abc: String,
    /// IO and S exchanged at the second mention: the answer flips
    pub corrupt_swap: String,
}

pub fn ioi_words() -> Vec<String> {
    let mut w: Vec<String> = Vec::new();
    for t in IOI_TRAIN_TEMPLATES
        .iter()
        .chain(IOI_HELDOUT_TEMPLATES.iter())
    {
        for x in split_words(t) {
            if !x.starts_with('{') && !["A", "B", "S", "P", "O", "}", "{"].contains(&x.as_str()) {
                w.push(x);
            }
        }
    }
    w.extend(IOI_NAMES.iter().map(|s| s.to_string()));
    w.extend(IOI_PLACES.iter().map(|s| s.to_string()));
    w.extend(IOI_OBJECTS.iter().map(|s| s.to_string()));
    let mut seen = Vec::new();
    for x in w {
        if !seen.contains(&x) {
            seen.push(x);
        }
    }
    seen
}

fn fill(t: &str, a: &str, b: &str, s: &str, p: &str, o: &str) -> String {
    t.replace("{A}", a)
        .replace("{B}", b)
        .replace("{S}", s)
        .replace("{P}", p)
        .replace("{O}", o)
}

/// A random IOI example from template `ti` (index over train then held-out templates).
pub fn ioi_example(rng: &mut Rng, ti: usize) -> IoiExample {
    let all: Vec<&str> = IOI_TRAIN_TEMPLATES
        .iter()
        .chain(IOI_HELDOUT_TEMPLATES.iter())
        .copied()
        .collect();
    let t = all[ti];
    let io = *rng.pick(&IOI_NAMES);
    let mut s = *rng.pick(&IOI_NAMES);
    while s == io {
        s = *rng.pick(&IOI_NAMES);
    }
    let mut c = *rng.pick(&IOI_NAMES);
    while c == io || c == s {
        c = *rng.pick(&IOI_NAMES);
    }
    let p = *rng.pick(&IOI_PLACES);
    let o = *rng.pick(&IOI_OBJECTS);
    let (a, b) = if rng.below(2) == 0 { (io, s) } else { (s, io) };
    IoiExample {
        template: ti,
        heldout_template: ti >= IOI_TRAIN_TEMPLATES.len(),
        clean: fill(t, a, b, s, p, o),
        io: format!(" {io}"),
        s: format!(" {s}"),
        corrupt_abc: fill(t, a, b, c, p, o),
        corrupt_swap: fill(t, a, b, io, p, o),
    }
}

/// A batch from one template (all rows the same length); loss at the last position.
pub fn ioi_batch(v: &Vocab, rng: &mut Rng, b: usize, templates: &[usize]) -> Batch {
    let ti = *rng.pick(templates);
    let mut ids = Vec::with_capacity(b);
    let mut targets = Vec::with_capacity(b);
    for _ in 0..b {
        let ex = ioi_example(rng, ti);
        let row = v.encode(&ex.clean);
        let last = row.len() - 1;
        targets.push(vec![(last, v.id(ex.io.trim()))]);
        ids.push(row);
    }
    Batch { ids, targets }
}
