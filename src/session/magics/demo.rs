//! `%gim demo`: a sample token heatmap (no model needed) — SVG, PNG and HTML in one bundle.

use super::Flow;
use crate::session::{views, MimeBundle, Output, Session};

pub const NAME: &str = "demo";

/// Render a sample token heatmap without loading a model (checks that pictures display).
#[derive(clap::Parser, Debug)]
pub struct Args {}

pub fn run(_s: &mut Session, _a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    Ok(Some(views::demo_bundle()))
}
