//! `%gim info`: versions, device, memory and settings — the provenance of a notebook's numbers.

use super::Flow;
use crate::session::{magics::config::show, MimeBundle, Output, Session};

pub const NAME: &str = "info";

/// Versions, loaded models, device, memory in use and the current settings.
#[derive(clap::Parser, Debug)]
pub struct Args {}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

pub fn run(s: &mut Session, _a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    let models: Vec<_> = s.models.values().map(|m| m.info()).collect();
    let mut text = format!(
        "gim {}  (candle {}, cuda feature: {}, metal feature: {})\nmemory in use: {:.0} MB\ncurrent model: {}\n",
        env!("CARGO_PKG_VERSION"),
        crate::CANDLE_VERSION,
        cfg!(feature = "cuda"),
        cfg!(feature = "metal"),
        rss_mb(),
        s.current.clone().unwrap_or_else(|| "none".into()),
    );
    for i in &models {
        text.push_str(&format!(
            "  {}: {} {} on {} from {}\n",
            i.name, i.model_type, i.dtype, i.device, i.source
        ));
    }
    text.push_str("settings:\n");
    for l in show(&s.settings).lines() {
        text.push_str(&format!("  {l}\n"));
    }
    let json = serde_json::json!({
        "gim_version": env!("CARGO_PKG_VERSION"),
        "candle_version": crate::CANDLE_VERSION,
        "models": models,
        "current": s.current,
        "settings": s.settings,
    });
    Ok(Some(MimeBundle::text(text).with_result(json)))
}
