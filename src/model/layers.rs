//! Layers shared by the forward pass (`transformer.rs`) and the explicit backward
//! (`backward.rs`): position ids, attention masks, rotary tables, norms, linear projections
//! (whole and per head) and grouped-query key/value repetition.

use candle_core::{DType, Device, Tensor, D};

use super::config::{ModelConfig, NormKind};
use super::gemm::matmul;
use super::ops::linear_w;
use super::row_kernels;
use super::weights::{LinearW, NormW};
use crate::error::{GimError, Result};
/// Position ids per row; with left padding, real tokens count from 0.
pub(crate) fn position_ids(
    b: usize,
    s: usize,
    mask: Option<&[Vec<u8>]>,
) -> Result<Vec<Vec<usize>>> {
    match mask {
        None => Ok(vec![(0..s).collect(); b]),
        Some(m) => {
            if m.len() != b || m.iter().any(|r| r.len() != s) {
                return Err(GimError::input(
                    "attention mask shape does not match the batch",
                ));
            }
            Ok(m.iter()
                .map(|row| {
                    let mut p = 0usize;
                    row.iter()
                        .map(|&v| {
                            let here = p;
                            if v != 0 {
                                p += 1;
                            }
                            here
                        })
                        .collect()
                })
                .collect())
        }
    }
}

/// Boolean masks `[b, 1, s, offset + s]` (1 = may attend), one per distinct window size; the
/// queries are positions `offset..offset + s`, the keys `0..offset + s` (`offset` > 0: a cached
/// prefix, never with padding).
pub(crate) struct Masks {
    full: Tensor,
    windowed: Vec<(usize, Tensor)>,
    per_layer: Vec<Option<usize>>,
}

impl Masks {
    pub(crate) fn new(
        cfg: &ModelConfig,
        positions: &[Vec<usize>],
        pad: Option<&[Vec<u8>]>,
        offset: usize,
        dev: &Device,
    ) -> Result<Self> {
        let b = positions.len();
        let s = positions.first().map(|r| r.len()).unwrap_or(0);
        let sk = offset + s;
        let build = |window: Option<usize>| -> Result<Tensor> {
            let mut m = vec![0u8; b * s * sk];
            for r in 0..b {
                for q in 0..s {
                    let qa = offset + q;
                    let row = &mut m[(r * s + q) * sk..(r * s + q + 1) * sk];
                    for (k, slot) in row.iter_mut().enumerate().take(qa + 1) {
                        let real = pad.map(|p| p[r][k] != 0).unwrap_or(true);
                        let in_window = window.map(|w| qa - k < w).unwrap_or(true);
                        if real && in_window {
                            *slot = 1;
                        }
                    }
                    // A padding query row would otherwise attend to nothing (NaN): let it see itself.
                    if row.iter().all(|&v| v == 0) {
                        row[qa] = 1;
                    }
                }
            }
            Ok(Tensor::from_vec(m, (b, 1, s, sk), dev)?)
        };
        let mut windowed = Vec::new();
        for w in cfg.sliding_window.iter().flatten() {
            if !windowed.iter().any(|(x, _)| x == w) {
                // A window wider than the prompt is the full causal mask.
                windowed.push((*w, build(if *w < sk { Some(*w) } else { None })?));
            }
        }
        Ok(Masks {
            full: build(None)?,
            windowed,
            per_layer: cfg.sliding_window.clone(),
        })
    }

    pub(crate) fn for_layer(&self, l: usize) -> &Tensor {
        match self.per_layer.get(l).copied().flatten() {
            Some(w) => self
                .windowed
                .iter()
                .find(|(x, _)| *x == w)
                .map(|(_, t)| t)
                .unwrap_or(&self.full),
            None => &self.full,
        }
    }
}

/// cos/sin tables `[b, s, 1, rotary_dim]` (HF: f32 math, then cast).
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
    rotary_dim: usize,
}

impl Rope {
    pub(crate) fn new(
        positions: &[Vec<usize>],
        inv_freq: &[f64],
        rotary_dim: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let b = positions.len();
        let s = positions.first().map(|r| r.len()).unwrap_or(0);
        let half = rotary_dim / 2;
        let mut cos = Vec::with_capacity(b * s * rotary_dim);
        let mut sin = Vec::with_capacity(b * s * rotary_dim);
        for row in positions {
            for &p in row {
                let mut c = Vec::with_capacity(half);
                let mut sn = Vec::with_capacity(half);
                for &f in inv_freq {
                    let a = (p as f32) * (f as f32);
                    c.push(a.cos());
                    sn.push(a.sin());
                }
                cos.extend_from_slice(&c);
                cos.extend_from_slice(&c);
                sin.extend_from_slice(&sn);
                sin.extend_from_slice(&sn);
            }
        }
        let cos = Tensor::from_vec(cos, (b, s, 1, rotary_dim), dev)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (b, s, 1, rotary_dim), dev)?.to_dtype(dtype)?;
        Ok(Rope {
            cos,
            sin,
            rotary_dim,
        })
    }

    /// Rotate-half RoPE on `[b, s, heads, d_head]`.
    pub(crate) fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(y) = row_kernels::rope(x, &self.cos, &self.sin, false)? {
            return Ok(y);
        }
        let r = self.rotary_dim;
        let (rot, pass) = self.split(x)?;
        let x1 = rot.narrow(D::Minus1, 0, r / 2)?;
        let x2 = rot.narrow(D::Minus1, r / 2, r / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        let out = (rot.broadcast_mul(&self.cos)? + rotated.broadcast_mul(&self.sin)?)?;
        Self::join(out, pass)
    }

    /// The rotated part of the last dimension and the part that passes through (partial rotary).
    fn split(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let (dh, r) = (x.dim(D::Minus1)?, self.rotary_dim);
        if r < dh {
            Ok((
                x.narrow(D::Minus1, 0, r)?,
                Some(x.narrow(D::Minus1, r, dh - r)?),
            ))
        } else {
            Ok((x.clone(), None))
        }
    }

    fn join(out: Tensor, pass: Option<Tensor>) -> Result<Tensor> {
        match pass {
            Some(p) => Ok(Tensor::cat(&[&out, &p], D::Minus1)?),
            None => Ok(out),
        }
    }

    /// Transpose of [`Rope::apply`] (its backward): `dx = dy·cos + rotᵀ(dy·sin)`, `rotᵀ(a, b) = (b, −a)`.
    pub(crate) fn apply_transpose(&self, dy: &Tensor) -> Result<Tensor> {
        if let Some(y) = row_kernels::rope(dy, &self.cos, &self.sin, true)? {
            return Ok(y);
        }
        let r = self.rotary_dim;
        let (rot, pass) = self.split(dy)?;
        let ds = rot.broadcast_mul(&self.sin)?;
        let a = ds.narrow(D::Minus1, 0, r / 2)?;
        let b = ds.narrow(D::Minus1, r / 2, r / 2)?;
        let rt = Tensor::cat(&[&b, &a.neg()?], D::Minus1)?;
        let out = (rot.broadcast_mul(&self.cos)? + rt)?;
        Self::join(out, pass)
    }
}

/// LayerNorm / RMSNorm over the last dim, statistics in f32; `freeze` detaches the statistic.
pub(crate) fn norm(cfg: &ModelConfig, w: &NormW, x: &Tensor, freeze: bool) -> Result<Tensor> {
    // one fused pass for f32 CPU tensors autograd does not track (`freeze` only matters to autograd)
    let spec = row_kernels::NormSpec::of(cfg, freeze);
    let bias = match cfg.norm {
        NormKind::LayerNorm => w.b.as_ref(),
        NormKind::RmsNorm => None,
    };
    if let Some(y) = row_kernels::norm(spec, x, &w.w, bias)? {
        return Ok(y);
    }
    let dtype = x.dtype();
    let xf = x.to_dtype(super::ops::compute_dtype(dtype))?;
    let eps = cfg.norm_eps;
    let y = match cfg.norm {
        NormKind::RmsNorm => {
            let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
            let mut inv = (ms + eps)?.sqrt()?.recip()?;
            if freeze {
                inv = inv.detach();
            }
            let normed = xf.broadcast_mul(&inv)?;
            if cfg.norm_one_plus {
                // Gemma: (x/rms) * (1 + w), computed in f32 before the cast back.
                let scale = (w.w.to_dtype(xf.dtype())? + 1.0)?;
                normed.broadcast_mul(&scale)?.to_dtype(dtype)?
            } else {
                normed
                    .to_dtype(dtype)?
                    .broadcast_mul(&w.w.to_dtype(dtype)?)?
            }
        }
        NormKind::LayerNorm => {
            let mean = xf.mean_keepdim(D::Minus1)?;
            let xc = xf.broadcast_sub(&mean)?;
            let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
            let mut inv = (var + eps)?.sqrt()?.recip()?;
            if freeze {
                inv = inv.detach();
            }
            let normed = xc.broadcast_mul(&inv)?.to_dtype(dtype)?;
            let y = normed.broadcast_mul(&w.w.to_dtype(dtype)?)?;
            match &w.b {
                Some(b) => y.broadcast_add(&b.to_dtype(dtype)?)?,
                None => y,
            }
        }
    };
    Ok(y)
}

pub(crate) fn lin(x: &Tensor, l: &LinearW) -> Result<Tensor> {
    Ok(linear_w(x, &l.w, l.b.as_ref())?)
}

/// Project per-head inputs `[b, s, h, d]` with a weight `[h*dh, d]` → `[b, s, h, dh]`.
pub(crate) fn per_head_linear(x: &Tensor, l: &LinearW, dh: usize) -> Result<Tensor> {
    let (b, s, h, d) = x.dims4()?;
    // [h, d, dh] weights; x as [h, b*s, d]
    let w = l.w.tensor()?.reshape((h, dh, d))?.transpose(1, 2)?;
    let xs = x.permute((2, 0, 1, 3))?.reshape((h, b * s, d))?;
    let y = matmul(&xs, &w)?; // [h, b*s, dh]
    let mut y = y.reshape((h, b, s, dh))?.permute((1, 2, 0, 3))?;
    if let Some(bias) = &l.b {
        y = y.broadcast_add(&bias.reshape((h, dh))?)?;
    }
    Ok(y)
}

/// `[b, h, s, x]` (h = kv·rep query heads, head `g·rep + r` reading key/value head `g`) seen as
/// `[b, kv, rep·s, x]`: each key/value head's query heads stacked as rows. A product of a group's
/// stacked rows with its one key/value head is every head's product (each row on its own), and a
/// product of their transposes sums the group's heads (grouped-query attention without repeating
/// keys and values: the repeats were copies of 2·rep·s·dh floats per layer each way, and the
/// backward then summed them back, serially).
pub(crate) fn stack_groups(x: &Tensor, kv: usize) -> Result<Tensor> {
    let (b, h, s, d) = x.dims4()?;
    if kv == 0 || h % kv != 0 {
        return Err(crate::error::GimError::input(format!(
            "internal: {h} query heads do not share {kv} key/value heads evenly"
        )));
    }
    Ok(x.contiguous()?.reshape((b, kv, h / kv * s, d))?)
}

/// The dtype's most negative finite value (what transformers uses for masked scores).
pub(crate) fn min_value(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::MIN,
        DType::F16 => -65504.0,
        DType::BF16 => -3.3895313892515355e38,
        _ => f32::MIN as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused rotary kernel (untracked f32) equals the composed tensor ops (taken for a tracked
    /// input) bit for bit, forward and transpose.
    #[test]
    fn fused_rope_equals_the_composed_ops_bit_for_bit() -> Result<()> {
        let dev = Device::Cpu;
        let positions = vec![vec![0, 1, 2, 3, 4], vec![3, 4, 5, 6, 7]];
        let inv: Vec<f64> = (0..4)
            .map(|i| 10000f64.powf(-(2.0 * i as f64) / 8.0))
            .collect();
        let rope = Rope::new(&positions, &inv, 8, DType::F32, &dev)?;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 3, 8), &dev)?;
        let tracked = candle_core::Var::from_tensor(&x)?;
        assert!(row_kernels::rope(&x, &rope.cos, &rope.sin, false)?.is_some());
        for transpose in [false, true] {
            let (fused, composed) = if transpose {
                (
                    rope.apply_transpose(&x)?,
                    rope.apply_transpose(tracked.as_tensor())?,
                )
            } else {
                (rope.apply(&x)?, rope.apply(tracked.as_tensor())?)
            };
            let a: Vec<f32> = fused.flatten_all()?.to_vec1()?;
            let b: Vec<f32> = composed.detach().flatten_all()?.to_vec1()?;
            assert_eq!(a.len(), b.len());
            assert!(
                a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                "transpose {transpose}: fused and composed rope differ"
            );
        }
        Ok(())
    }
}
