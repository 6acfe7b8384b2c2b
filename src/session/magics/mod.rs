//! The magic registry: every `%gim` command, its clap arguments and doc, in one file each.

mod ablate;
mod attribute;
pub mod circuit;
mod compare;
pub mod config;
mod demo;
pub mod edges;
mod eval;
mod export;
mod generate;
mod heads;
pub mod help;
mod info;
mod load;
mod models;
mod patch;
mod pattern;
pub mod problem;
mod selfrepair;
mod tokens;
mod top;

use clap::{CommandFactory, FromArgMatches};

use super::{Completion, MagicError, MimeBundle, Output, Session};
use crate::attribution::Method;
use crate::error::GimError;

/// How a magic runs: session, argv (argv[0] = name), output.
pub type RunFn = fn(&mut Session, &[String], &mut dyn Output) -> Result<Option<MimeBundle>, Flow>;

/// One magic: its name, clap command (for help, usage and completion) and runner.
pub struct Magic {
    pub name: &'static str,
    pub command: fn() -> clap::Command,
    pub run: RunFn,
}

/// How a magic ended other than with a result.
pub enum Flow {
    /// `--help` was asked for: show this text
    Help(String),
    Error(GimError),
}

impl From<GimError> for Flow {
    fn from(e: GimError) -> Self {
        Flow::Error(e)
    }
}

impl From<candle_core::Error> for Flow {
    fn from(e: candle_core::Error) -> Self {
        Flow::Error(GimError::from(e))
    }
}

/// Parse argv (argv[0] = magic name) into a clap derive struct.
pub fn parse<A: CommandFactory + FromArgMatches>(argv: &[String]) -> Result<A, Flow> {
    let cmd = A::command();
    match cmd.try_get_matches_from(argv) {
        Ok(m) => A::from_arg_matches(&m).map_err(|e| Flow::Error(GimError::input(clap_line(&e)))),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                Err(Flow::Help(e.to_string()))
            }
            _ => Err(Flow::Error(GimError::input(clap_line(&e)))),
        },
    }
}

fn clap_line(e: &clap::Error) -> String {
    let s = e.to_string();
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad arguments")
        .trim_start_matches("error: ")
        .to_string()
}

macro_rules! magic {
    ($m:ident) => {
        Magic {
            name: $m::NAME,
            command: || {
                <$m::Args as CommandFactory>::command()
                    .name($m::NAME)
                    .bin_name(concat!("%gim ", stringify!($m)))
            },
            run: |s, argv, out| {
                let a = parse::<$m::Args>(argv)?;
                $m::run(s, a, out)
            },
        }
    };
}

/// Every magic, in help order.
pub fn all() -> Vec<Magic> {
    vec![
        magic!(help),
        magic!(demo),
        magic!(load),
        Magic {
            name: "models",
            command: || {
                <models::Args as CommandFactory>::command()
                    .name("models")
                    .bin_name("%gim models")
            },
            run: |s, argv, out| {
                let a = parse::<models::Args>(argv)?;
                models::run_models(s, a, out)
            },
        },
        Magic {
            name: "use",
            command: || {
                <models::UseArgs as CommandFactory>::command()
                    .name("use")
                    .bin_name("%gim use")
            },
            run: |s, argv, out| {
                let a = parse::<models::UseArgs>(argv)?;
                models::run_use(s, a, out)
            },
        },
        Magic {
            name: "unload",
            command: || {
                <models::UnloadArgs as CommandFactory>::command()
                    .name("unload")
                    .bin_name("%gim unload")
            },
            run: |s, argv, out| {
                let a = parse::<models::UnloadArgs>(argv)?;
                models::run_unload(s, a, out)
            },
        },
        magic!(config),
        magic!(generate),
        magic!(attribute),
        magic!(compare),
        magic!(eval),
        magic!(tokens),
        magic!(top),
        magic!(heads),
        magic!(edges),
        magic!(circuit),
        magic!(patch),
        magic!(ablate),
        magic!(pattern),
        magic!(selfrepair),
        magic!(export),
        magic!(info),
    ]
}

pub fn find(name: &str) -> Option<Magic> {
    all().into_iter().find(|m| m.name == name)
}

fn usage_of(name: &str) -> String {
    match find(name) {
        Some(m) => (m.command)()
            .render_usage()
            .to_string()
            .replace("Usage: ", ""),
        None => "%gim <command> [args]".into(),
    }
}

/// Run a magic by name with its argv.
pub fn run(
    s: &mut Session,
    name: &str,
    argv: &[String],
    out: &mut dyn Output,
) -> Result<Option<MimeBundle>, MagicError> {
    let Some(m) = find(name) else {
        let names: Vec<&str> = all().iter().map(|m| m.name).collect();
        let hint = names
            .iter()
            .find(|n| n.starts_with(crate::text::prefix_chars(name, 2)))
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        return Err(MagicError {
            message: format!("unknown magic `{name}`{hint}; `%gim help` lists them"),
            usage: format!("%gim <command> [args]   commands: {}", names.join(", ")),
        });
    };
    match (m.run)(s, argv, out) {
        Ok(b) => Ok(b),
        Err(Flow::Help(text)) => Ok(Some(
            MimeBundle::text(text.clone()).with("text/markdown", format!("```\n{text}\n```")),
        )),
        // An interrupt is not a mistake in the arguments: one line, no usage.
        Err(Flow::Error(GimError::Interrupted)) => Err(MagicError {
            message: GimError::Interrupted.to_string(),
            usage: String::new(),
        }),
        Err(Flow::Error(e)) => Err(MagicError {
            message: e.to_string().lines().next().unwrap_or("error").to_string(),
            usage: usage_of(name),
        }),
    }
}

/// The settings keys accepted by `%gim config`.
pub const SETTINGS_KEYS: &[&str] = &[
    "freeze_norm",
    "softmax_temperature",
    "q_scale",
    "k_scale",
    "v_scale",
    "gate_scale",
    "up_scale",
    "method",
    "ig_steps",
    "seed",
    "out_dir",
];

fn toy_names() -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(crate::loader::embedded_models_dir()) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with("toy-") {
                v.push(n);
            }
        }
    }
    v.sort();
    v
}

/// Completion for a magic line.
pub fn complete(s: &Session, line: &str, cursor: usize) -> Completion {
    let cursor = crate::text::floor_char_boundary(line, cursor);
    let (before, _) = line.split_at(cursor);
    let (word_start, _) = crate::text::word_around(before, cursor);
    let (head, word) = before.split_at(word_start);
    let words: Vec<&str> = head.split_whitespace().collect();
    let mut cands: Vec<String> = Vec::new();
    if words.is_empty() {
        cands = all().iter().map(|m| m.name.to_string()).collect();
    } else if let Some(m) = find(words[0]) {
        let prev = words.last().copied().unwrap_or("");
        if word.starts_with('-') {
            for a in (m.command)().get_arguments() {
                if let Some(l) = a.get_long() {
                    cands.push(format!("--{l}"));
                }
            }
            cands.push("--help".into());
        } else if prev == "--method" || prev == "--methods" {
            let head = word
                .rsplit_once(',')
                .map(|(h, _)| format!("{h},"))
                .unwrap_or_default();
            let tail = word.rsplit(',').next().unwrap_or("");
            for me in Method::all() {
                if me.name().starts_with(tail) {
                    cands.push(format!("{head}{}", me.name()));
                }
            }
        } else if matches!(m.name, "use" | "unload")
            || prev == "--model"
            || (m.name == "info" && words.len() == 1)
        {
            cands.extend(s.models.keys().cloned());
        } else if m.name == "load" && words.len() == 1 {
            cands.extend(toy_names());
            cands.extend(
                crate::loader::NAMED_MODELS
                    .iter()
                    .map(|(n, _)| n.to_string()),
            );
            cands.extend(crate::loader::cached_repo_ids());
        } else if m.name == "config" {
            cands.extend(SETTINGS_KEYS.iter().map(|k| format!("{k}=")));
        } else if m.name == "help" {
            cands.extend(all().iter().map(|m| m.name.to_string()));
        } else if m.name == "export" && words.len() == 1 {
            cands.extend(s.vars.keys().cloned());
        }
    }
    let mut matches: Vec<String> = cands.into_iter().filter(|c| c.starts_with(word)).collect();
    matches.sort();
    matches.dedup();
    Completion {
        matches,
        cursor_start: word_start,
        cursor_end: cursor,
    }
}

/// Inspection: docs of a magic or flag, or a loaded model's summary.
pub fn inspect(s: &Session, line: &str, cursor: usize) -> Option<MimeBundle> {
    let (start, end) = crate::text::word_around(line, cursor);
    let word = line.get(start..end).unwrap_or("").trim_matches('"');
    let first = line.split_whitespace().next().unwrap_or("");
    if let Some(m) = s.models.get(word) {
        let info = m.info();
        let text = format!(
            "{}: {} from {}\n{} layers, {} heads ({} kv), d_model {}, vocab {}, {:.2}M parameters, {} on {}",
            info.name, info.model_type, info.source, info.n_layers, info.n_heads, info.n_kv_heads, info.d_model,
            info.vocab_size, info.n_params as f64 / 1e6, info.dtype, info.device
        );
        return Some(
            MimeBundle::text(text.clone()).with("text/markdown", format!("```\n{text}\n```")),
        );
    }
    if word.starts_with("--") {
        let m = find(first)?;
        let cmd = (m.command)();
        let a = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(word.trim_start_matches("--")))?;
        let help = a
            .get_long_help()
            .or(a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let text = format!("{word}: {help}\n\nUsage: {}", usage_of(first));
        return Some(MimeBundle::text(text.clone()).with(
            "text/markdown",
            format!("**`{word}`** — {help}\n\n`{}`", usage_of(first)),
        ));
    }
    let name = if find(word).is_some() { word } else { first };
    let m = find(name)?;
    let help = (m.command)().render_long_help().to_string();
    Some(MimeBundle::text(help).with(
        "text/markdown",
        help::command_markdown(m.name, (m.command)()),
    ))
}
