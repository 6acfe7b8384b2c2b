//! Occlusion: the objective's drop when each token in turn is replaced by the baseline token,
//! with the prompt's own keys and values reused for the positions a chunk of rows shares.

use super::methods::{values, Plan};
use crate::error::Result;
use crate::loader::LoadedModel;
use crate::model::{Cache, HookPoint, Prefix};

/// Leave-one-out: the objective's drop when each token in turn is replaced by `baseline`.
/// Returns (drops, clean value, resolved target).
///
/// Rows are taken 16 at a time in position order. A row that replaces token `i` equals the prompt
/// before `i`, so a chunk reuses the prompt's own keys and values for the positions before its
/// first replaced token and runs only the rest: about half the work of full forwards.
pub(super) fn occlusion(m: &LoadedModel, p: &Plan, baseline: u32) -> Result<(Vec<f64>, f64, u32)> {
    let mut cache = Cache::new(|h| matches!(h, HookPoint::K(_) | HookPoint::V(_)));
    let (v0, t) = values(m, std::slice::from_ref(&p.ids), p, None, Some(&mut cache))?;
    let v0 = v0[0];
    let fixed = p.with_targets(t);
    // positions before the first read-out position are shared by every chunk's rows too
    let first_read = p.positions.iter().copied().min().unwrap_or(0);
    let n = p.ids.len();
    let mut drops = Vec::with_capacity(n);
    for start in (0..n).step_by(16) {
        crate::interrupt::check()?;
        let offset = start.min(first_read);
        let rows: Vec<Vec<u32>> = (start..(start + 16).min(n))
            .map(|i| {
                let mut r = p.ids[offset..].to_vec();
                r[i - offset] = baseline;
                r
            })
            .collect();
        let prefix = match offset {
            0 => None,
            o => Some(Prefix::from_cache(&cache, m.model.cfg.n_layers, o)?),
        };
        let (vs, _) = values(m, &rows, &fixed, prefix.as_ref(), None)?;
        drops.extend(vs.iter().map(|v| v0 - v));
    }
    Ok((drops, v0, t))
}
