//! Real tasks generated in-project for any tokenizer (issue #15): indirect-object identification
//! and greater-than, each with a clean prompt, a corrupted prompt of the same token length, a
//! target and a foil, kept only where the model gets the clean prompt right. The output lines
//! are what `gim eval` (`clean` as prompt, `target`, `foil` as contrast) and circuit work read.
//!
//! ```no_run
//! use gim::tasks::{build, TaskKind, TaskOpts};
//! let m = gim::load("smollm2-135m", &Default::default()).unwrap();
//! let set = build(&m, TaskKind::Ioi, &TaskOpts { n: 40, ..Default::default() }).unwrap();
//! eprintln!("{}", set.summary());
//! for ex in &set.examples { println!("{}", serde_json::to_string(ex).unwrap()); }
//! ```

pub mod greater_than;
pub mod ioi;

use candle_core::{DType, IndexOp};
use serde::{Deserialize, Serialize};

use crate::error::{GimError, Result};
use crate::loader::LoadedModel;
use crate::model::Positions;
use crate::tokenizer::Tok;

/// Which task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// indirect-object identification: "When Mary and John went to the store, John gave a drink to" → " Mary" (foil " John")
    Ioi,
    /// greater-than: "The war lasted from the year 1732 to the year 17" → "4" (foil "2")
    GreaterThan,
}

impl TaskKind {
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Ioi => "ioi",
            TaskKind::GreaterThan => "greater-than",
        }
    }
}

/// How an IOI prompt is corrupted (greater-than has one corruption: the start year `XX01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IoiCorruption {
    /// the second mention of the subject becomes a third name C: no name repeats, so the IO cannot be inferred
    #[default]
    Abc,
    /// the second mention of the subject becomes the IO, so the subject is the answer
    Subject,
}

impl IoiCorruption {
    pub fn name(&self) -> &'static str {
        match self {
            IoiCorruption::Abc => "abc",
            IoiCorruption::Subject => "subject",
        }
    }
}

/// Generation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOpts {
    /// prompts generated (those the model gets right are kept)
    pub n: usize,
    pub seed: u64,
    pub corruption: IoiCorruption,
    /// also require the target to be the model's top prediction over the whole vocabulary
    pub top1: bool,
    /// prompts per forward pass of the model filter
    pub batch_size: usize,
}

impl Default for TaskOpts {
    fn default() -> Self {
        TaskOpts {
            n: 200,
            seed: 0,
            corruption: IoiCorruption::Abc,
            top1: false,
            batch_size: 32,
        }
    }
}

/// A generated prompt before the model filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub clean: String,
    pub corrupt: String,
    pub target: String,
    pub foil: String,
    pub template: usize,
    pub order: Option<String>,
    pub io: Option<String>,
    pub s: Option<String>,
    pub c: Option<String>,
    pub year: Option<u32>,
}

/// What generation dropped before the model filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenStats {
    pub generated: usize,
    /// candidates whose corrupt prompt has another token length, or whose target / foil is not
    /// one token continuing the prompt
    pub skipped_length: usize,
    /// IOI: names of the built-in list that are one token for this tokenizer
    pub names: usize,
}

/// One kept example: a line of `gim tasks` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskExample {
    pub task: String,
    pub clean: String,
    pub corrupt: String,
    /// the right next token, with its leading space (" Mary")
    pub target: String,
    /// the wrong alternative the metric compares with (" John")
    pub foil: String,
    /// index of the template (IOI) or event noun (greater-than)
    pub template: usize,
    pub corruption: String,
    /// tokens of the clean prompt (= of the corrupt one)
    pub n_tokens: usize,
    /// logit(target) − logit(foil) on the clean prompt
    pub logit_diff: f64,
    /// logit(target) − logit(foil) on the corrupt prompt
    pub corrupt_logit_diff: f64,
    /// IOI: ABBA (IO named first) or BABA
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub order: Option<String>,
    /// IOI: the indirect object (= target)
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub io: Option<String>,
    /// IOI: the subject (= foil)
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub s: Option<String>,
    /// IOI `abc`: the third name of the corrupt prompt
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub c: Option<String>,
    /// greater-than: the start year
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub year: Option<u32>,
}

/// The outcome of [`build`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSet {
    pub task: String,
    pub model_type: String,
    pub corruption: String,
    pub seed: u64,
    pub stats: GenStats,
    /// candidates that reached the model filter
    pub checked: usize,
    pub kept: usize,
    /// what "the model gets it right" means here
    pub criterion: String,
    /// distinct templates among the kept examples
    pub templates: usize,
    pub examples: Vec<TaskExample>,
}

impl TaskSet {
    /// One line for stderr: `kept 143 of 200 (model right: …)`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} ({} corruption): kept {} of {} (model right: {}), {} templates",
            self.task,
            self.corruption,
            self.kept,
            self.stats.generated,
            self.criterion,
            self.templates
        );
        if self.stats.skipped_length > 0 {
            s.push_str(&format!(
                "; {} skipped before the model (token lengths differ or target not one token)",
                self.stats.skipped_length
            ));
        }
        if self.stats.names > 0 {
            s.push_str(&format!("; {} single-token names", self.stats.names));
        }
        s
    }
}

/// One token id of `text` continuing `prompt` exactly (`prompt + text` encodes to the prompt's
/// ids plus that token), else `None`.
pub fn continuation_id(tok: &Tok, prompt: &str, text: &str) -> Result<Option<u32>> {
    let alone = tok.encode(text, false)?;
    let [id] = alone[..] else { return Ok(None) };
    let base = tok.encode(prompt, true)?;
    let ids = tok.encode(&format!("{prompt}{text}"), true)?;
    Ok(
        (ids.len() == base.len() + 1 && ids.starts_with(&base) && ids.last() == Some(&id))
            .then_some(id),
    )
}

/// Whether a candidate is usable: clean and corrupt have the same token length, target and foil
/// are distinct single tokens continuing the clean prompt.
pub fn check_lengths(tok: &Tok, c: &Candidate) -> Result<bool> {
    let n = tok.encode(&c.clean, true)?.len();
    if tok.encode(&c.corrupt, true)?.len() != n {
        return Ok(false);
    }
    let t = continuation_id(tok, &c.clean, &c.target)?;
    let f = continuation_id(tok, &c.clean, &c.foil)?;
    Ok(matches!((t, f), (Some(a), Some(b)) if a != b))
}

/// The candidates of a task, before the model filter.
pub fn candidates(
    tok: &Tok,
    kind: TaskKind,
    opts: &TaskOpts,
) -> Result<(Vec<Candidate>, GenStats)> {
    match kind {
        TaskKind::Ioi => ioi::generate(tok, opts.n, opts.seed, opts.corruption),
        TaskKind::GreaterThan => greater_than::generate(tok, opts.n, opts.seed),
    }
}

/// Last-position logits of (target, foil) and whether the target is the argmax, per row; rows
/// of equal length go through the model together.
fn judge(
    m: &LoadedModel,
    rows: &[(Vec<u32>, u32, u32)],
    batch: usize,
) -> Result<Vec<(f64, f64, bool)>> {
    let mut out = vec![(0.0, 0.0, false); rows.len()];
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].0.len());
    let mut i = 0;
    while i < order.len() {
        let len = rows[order[i]].0.len();
        let mut j = i;
        while j < order.len() && j - i < batch.max(1) && rows[order[j]].0.len() == len {
            j += 1;
        }
        crate::interrupt::check()?;
        let group = &order[i..j];
        let ids: Vec<Vec<u32>> = group.iter().map(|&k| rows[k].0.clone()).collect();
        let l = m
            .model
            .logits(&ids, Positions::Last)?
            .i((.., 0))?
            .to_dtype(DType::F32)?;
        let top: Vec<u32> = l.argmax(1)?.to_vec1()?;
        let l: Vec<Vec<f32>> = l.to_vec2()?;
        for (r, &k) in group.iter().enumerate() {
            let (_, t, f) = rows[k];
            let get = |id: u32| {
                l[r].get(id as usize)
                    .copied()
                    .map(f64::from)
                    .unwrap_or(f64::NAN)
            };
            out[k] = (get(t), get(f), top[r] == t);
        }
        i = j;
    }
    Ok(out)
}

/// Generate a task's prompts and keep those the model gets right: logit(target) > logit(foil) on
/// the clean prompt (and, with `top1`, the target is the top prediction). Deterministic under
/// `seed`.
pub fn build(m: &LoadedModel, kind: TaskKind, opts: &TaskOpts) -> Result<TaskSet> {
    if opts.n == 0 {
        return Err(GimError::input("--n must be at least 1"));
    }
    let (cands, stats) = candidates(&m.tok, kind, opts)?;
    let mut rows = Vec::with_capacity(cands.len() * 2);
    for c in &cands {
        let (Some(t), Some(f)) = (
            continuation_id(&m.tok, &c.clean, &c.target)?,
            continuation_id(&m.tok, &c.clean, &c.foil)?,
        ) else {
            return Err(GimError::input(
                "internal error: a checked candidate lost its target",
            ));
        };
        rows.push((m.tok.encode(&c.clean, true)?, t, f));
        rows.push((m.tok.encode(&c.corrupt, true)?, t, f));
    }
    if let Some((r, _, _)) = rows.iter().find(|r| r.0.len() > m.model.cfg.n_ctx) {
        return Err(GimError::input(format!(
            "a prompt has {} tokens but the model's context is {}",
            r.len(),
            m.model.cfg.n_ctx
        )));
    }
    let judged = judge(m, &rows, opts.batch_size)?;
    let mut examples = Vec::new();
    for (k, c) in cands.iter().enumerate() {
        let (t, f, top) = judged[2 * k];
        let (ct, cf, _) = judged[2 * k + 1];
        let right = t.partial_cmp(&f) == Some(std::cmp::Ordering::Greater);
        if !right || (opts.top1 && !top) {
            continue;
        }
        examples.push(TaskExample {
            task: kind.name().into(),
            clean: c.clean.clone(),
            corrupt: c.corrupt.clone(),
            target: c.target.clone(),
            foil: c.foil.clone(),
            template: c.template,
            corruption: corruption_name(kind, opts),
            n_tokens: rows[2 * k].0.len(),
            logit_diff: t - f,
            corrupt_logit_diff: ct - cf,
            order: c.order.clone(),
            io: c.io.clone(),
            s: c.s.clone(),
            c: c.c.clone(),
            year: c.year,
        });
    }
    let mut templates: Vec<usize> = examples.iter().map(|e| e.template).collect();
    templates.sort_unstable();
    templates.dedup();
    Ok(TaskSet {
        task: kind.name().into(),
        model_type: m.model.cfg.model_type.clone(),
        corruption: corruption_name(kind, opts),
        seed: opts.seed,
        stats,
        checked: cands.len(),
        kept: examples.len(),
        criterion: if opts.top1 {
            "logit(target) > logit(foil) and target = top-1".into()
        } else {
            "logit(target) > logit(foil)".into()
        },
        templates: templates.len(),
        examples,
    })
}

fn corruption_name(kind: TaskKind, opts: &TaskOpts) -> String {
    match kind {
        TaskKind::Ioi => opts.corruption.name().into(),
        TaskKind::GreaterThan => "start-01".into(),
    }
}
