//! `%gim models`, `%gim use`, `%gim unload`: the hot models of this session.

use super::Flow;
use crate::error::GimError;
use crate::session::{MimeBundle, Output, Session};

/// List the loaded models (the current one is marked with *).
#[derive(clap::Parser, Debug)]
pub struct Args {}

/// Make a loaded model the current one.
#[derive(clap::Parser, Debug)]
pub struct UseArgs {
    pub name: String,
}

/// Free a loaded model.
#[derive(clap::Parser, Debug)]
pub struct UnloadArgs {
    pub name: String,
}

fn not_loaded(s: &Session, name: &str) -> GimError {
    GimError::input(format!(
        "no model named `{name}` is loaded (loaded: {})",
        if s.models.is_empty() {
            "none".to_string()
        } else {
            s.models.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    ))
}

pub fn run_models(
    s: &mut Session,
    _a: Args,
    _out: &mut dyn Output,
) -> Result<Option<MimeBundle>, Flow> {
    if s.models.is_empty() {
        return Ok(Some(MimeBundle::text(
            "no models loaded; `%gim load <folder|file.gguf|repo-id|toy-ioi|smollm2-135m>`",
        )));
    }
    let mut text = String::new();
    let mut rows = Vec::new();
    for (name, m) in &s.models {
        let i = m.info();
        let cur = if s.current.as_deref() == Some(name) {
            "*"
        } else {
            " "
        };
        text.push_str(&format!(
            "{cur} {name:<16} {:<8} {:>3} layers {:>8.2}M  {} {}  {}\n",
            i.model_type,
            i.n_layers,
            i.n_params as f64 / 1e6,
            i.dtype,
            i.device,
            i.source
        ));
        rows.push(serde_json::to_value(&i).unwrap_or_default());
    }
    Ok(Some(
        MimeBundle::text(text).with_result(serde_json::Value::Array(rows)),
    ))
}

pub fn run_use(
    s: &mut Session,
    a: UseArgs,
    _out: &mut dyn Output,
) -> Result<Option<MimeBundle>, Flow> {
    if !s.models.contains_key(&a.name) {
        return Err(not_loaded(s, &a.name).into());
    }
    s.current = Some(a.name.clone());
    Ok(Some(MimeBundle::text(format!("current model: {}", a.name))))
}

pub fn run_unload(
    s: &mut Session,
    a: UnloadArgs,
    _out: &mut dyn Output,
) -> Result<Option<MimeBundle>, Flow> {
    if s.models.remove(&a.name).is_none() {
        return Err(not_loaded(s, &a.name).into());
    }
    if s.current.as_deref() == Some(a.name.as_str()) {
        s.current = s.models.keys().last().cloned();
    }
    Ok(Some(MimeBundle::text(format!(
        "unloaded {}; current model: {}",
        a.name,
        s.current.clone().unwrap_or_else(|| "none".into())
    ))))
}
