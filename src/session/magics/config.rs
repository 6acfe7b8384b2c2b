//! `%gim config [key=value …]`: session-wide GIM settings and defaults.

use super::{Flow, SETTINGS_KEYS};
use crate::attribution::Method;
use crate::error::GimError;
use crate::session::{MimeBundle, Output, Session, Settings};

pub const NAME: &str = "config";

/// Show or change session settings: the GIM rules (freeze_norm, softmax_temperature, q_scale,
/// k_scale, v_scale, gate_scale, up_scale; `off` disables a rule), the default method, ig_steps,
/// seed and out_dir. `%gim config reset` restores the defaults.
#[derive(clap::Parser, Debug)]
pub struct Args {
    /// key=value pairs, or `reset`.
    pub pairs: Vec<String>,
}

fn opt_f64(key: &str, v: &str) -> Result<Option<f64>, GimError> {
    if matches!(v, "off" | "none" | "null") {
        return Ok(None);
    }
    let x: f64 = v
        .parse()
        .map_err(|_| GimError::input(format!("{key} must be a number or `off`, got `{v}`")))?;
    Ok(Some(x))
}

fn apply(st: &mut Settings, key: &str, v: &str) -> Result<(), GimError> {
    let r = &mut st.rules;
    match key {
        "freeze_norm" => {
            r.freeze_norm = match v {
                "true" | "on" | "1" | "yes" => true,
                "false" | "off" | "0" | "no" => false,
                _ => {
                    return Err(GimError::input(format!(
                        "freeze_norm must be true or false, got `{v}`"
                    )))
                }
            }
        }
        "softmax_temperature" => r.softmax_temperature = opt_f64(key, v)?,
        "q_scale" => r.q_scale = opt_f64(key, v)?,
        "k_scale" => r.k_scale = opt_f64(key, v)?,
        "v_scale" => r.v_scale = opt_f64(key, v)?,
        "gate_scale" => r.gate_scale = opt_f64(key, v)?,
        "up_scale" => r.up_scale = opt_f64(key, v)?,
        "method" => st.method = Method::parse(v)?,
        "ig_steps" => {
            st.ig_steps = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                GimError::input(format!("ig_steps must be a positive integer, got `{v}`"))
            })?
        }
        "seed" => {
            st.seed = v
                .parse()
                .map_err(|_| GimError::input(format!("seed must be an integer, got `{v}`")))?
        }
        "out_dir" => st.out_dir = v.to_string(),
        other => {
            return Err(GimError::input(format!(
                "unknown setting `{other}` (settings: {})",
                SETTINGS_KEYS.join(", ")
            )))
        }
    }
    st.rules.validate()
}

pub fn show(st: &Settings) -> String {
    let f = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_else(|| "off".into());
    let r = &st.rules;
    format!(
        "freeze_norm = {}\nsoftmax_temperature = {}\nq_scale = {}\nk_scale = {}\nv_scale = {}\ngate_scale = {}\nup_scale = {}\nmethod = {}\nig_steps = {}\nseed = {}\nout_dir = {}",
        r.freeze_norm, f(r.softmax_temperature), f(r.q_scale), f(r.k_scale), f(r.v_scale), f(r.gate_scale), f(r.up_scale),
        st.method.name(), st.ig_steps, st.seed, st.out_dir
    )
}

pub fn run(s: &mut Session, a: Args, _out: &mut dyn Output) -> Result<Option<MimeBundle>, Flow> {
    // Validate everything on a copy first: a bad pair changes nothing.
    let mut next = s.settings.clone();
    for p in &a.pairs {
        if p == "reset" {
            next = Settings::default();
            continue;
        }
        let (k, v) = p.split_once('=').ok_or_else(|| {
            GimError::input(format!(
                "`{p}` is not key=value (e.g. softmax_temperature=2)"
            ))
        })?;
        apply(&mut next, k.trim(), v.trim())?;
    }
    s.settings = next;
    let json = serde_json::to_value(&s.settings).unwrap_or_default();
    Ok(Some(MimeBundle::text(show(&s.settings)).with_result(json)))
}
