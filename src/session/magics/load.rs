//! `%gim load`: load a model once and keep it hot.

use std::time::Instant;

use super::Flow;
use crate::loader::{self, LoadOpts};
use crate::session::{MimeBundle, Output, Session};

pub const NAME: &str = "load";

/// Load a model from a folder, a GGUF file (dequantised to --dtype), an embedded toy (toy-ioi,
/// toy-induction), a named real model (smollm2-135m, fetched by `make model`) or a Hugging Face repo
/// id in the local cache (org/name[@revision]); it stays in memory and becomes the current model.
#[derive(clap::Parser, Debug)]
pub struct Args {
    /// Folder, .gguf file, toy name, named model or repo id.
    pub model: String,
    /// Name to refer to it by (default: the last path component).
    #[arg(long = "as")]
    pub name: Option<String>,
    /// cpu, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype: f32, bf16, f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub fn run(s: &mut Session, a: Args, out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let t0 = Instant::now();
    let id = crate::session::output::new_display_id("load");
    out.display(
        MimeBundle::text(format!("loading {} …", a.model)),
        Some(&id),
    );
    let opts = LoadOpts {
        device: loader::parse_device(&a.device)?,
        dtype: loader::parse_dtype(&a.dtype)?,
        name: a.name.clone(),
    };
    let m = loader::load(&a.model, &opts)?;
    let info = m.info();
    let text = format!(
        "loaded {} ({}, {} layers, {} heads, d_model {}, {:.2}M parameters, {} on {}) as `{}`",
        a.model,
        info.model_type,
        info.n_layers,
        info.n_heads,
        info.d_model,
        info.n_params as f64 / 1e6,
        info.dtype,
        info.device,
        info.name
    );
    // The load time goes to the kernel's log, not into the notebook: re-running a notebook must
    // give identical outputs.
    eprintln!("{text} in {:.1} s", t0.elapsed().as_secs_f64());
    // The progress line gives way to the result (shown once, as the cell's result).
    out.update_display(MimeBundle::text("").with("text/html", ""), &id);
    s.current = Some(m.name.clone());
    s.models.insert(m.name.clone(), m);
    let json = serde_json::to_value(&info).unwrap_or_default();
    Ok(Some(MimeBundle::text(text).with_result(json)))
}
