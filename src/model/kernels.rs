//! Fused element-wise kernels for the MLP activations: a CPU fast path for f32 and the composed
//! candle ops everywhere else (other devices, other dtypes, and tensors that autograd tracks).
//!
//! candle runs unary ops on one thread with libm's scalar `tanhf`/`expf`, and the activation
//! derivative of the backward is a chain of ~12 tensor ops. On the GPT-2-small shape that was a
//! fifth of an attribution. Here each activation (and its backward, fused with the upstream
//! gradient) is one pass over the data, split over gim's worker threads (`pool.rs`), with a branch-free
//! Cephes-style `exp`/`tanh` that the compiler vectorises. Their accuracy against f64 is tested
//! (a few ulp); f64 models and the autograd reference engine never take this path.

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};

use super::config::Activation;
use crate::error::Result;

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
pub(super) const CHUNK: usize = 1 << 14;

// ---------------------------------------------------------------- scalar math (vectorisable)

/// `e^x` in f32: Cephes `expf` (range reduction by ln 2, degree-6 polynomial), branch-free.
// the constants are Cephes' as published
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub(super) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.7);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * C1 - n * C2;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1;
    let y = p * z + r + 1.0;
    // 2^n by the exponent bits (n is within [-126, 127] after the clamp)
    let pow2 = f32::from_bits(((n as i32 + 127) as u32) << 23);
    y * pow2
}

/// `tanh(x)` in f32: Cephes `tanhf` (odd polynomial below 0.625, `1 − 2/(e^{2|x|}+1)` above).
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_908_9e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328_2e-1)
            * z
            * x
            + x;
    let e = exp_f32(2.0 * a.min(20.0));
    let large = (1.0 - 2.0 / (e + 1.0)).copysign(x);
    if a < 0.625 {
        small
    } else {
        large
    }
}

const GELU_C: f32 = 0.797_884_6; // sqrt(2/pi)
const GELU_A: f32 = 0.044_715;

#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    0.5 * x * (1.0 + tanh_f32(GELU_C * x * (1.0 + GELU_A * x * x)))
}

/// GELU-tanh and its derivative, sharing one `tanh`.
#[inline(always)]
fn gelu_tanh_and_grad(x: f32) -> (f32, f32) {
    let x2 = x * x;
    let t = tanh_f32(GELU_C * x * (1.0 + GELU_A * x2));
    let dinner = GELU_C * (1.0 + 3.0 * GELU_A * x2);
    (
        0.5 * x * (1.0 + t),
        0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner,
    )
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// SiLU and its derivative, sharing one sigmoid.
#[inline(always)]
fn silu_and_grad(x: f32) -> (f32, f32) {
    let s = sigmoid(x);
    (x * s, s * (1.0 + x * (1.0 - s)))
}

// ---------------------------------------------------------------- one fused pass

/// Runs `f` over every element of equally long input slices into the output slices.
#[inline(always)]
fn pass<const I: usize, const O: usize>(
    ins: [&[f32]; I],
    outs: [&mut [f32]; O],
    f: &impl Fn([f32; I]) -> [f32; O],
) {
    let n = outs.first().map_or(0, |o| o.len());
    // every slice exactly n long, so the indexing below needs no bounds checks
    let ins: [&[f32]; I] = ins.map(|x| &x[..n]);
    let mut outs: [&mut [f32]; O] = outs.map(|o| &mut o[..n]);
    for i in 0..n {
        let r = f(ins.map(|x| x[i]));
        for (o, v) in outs.iter_mut().zip(r) {
            o[i] = v;
        }
    }
}

/// [`pass`] compiled for AVX2 + FMA (the element functions inline into it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pass_avx2<const I: usize, const O: usize>(
    ins: [&[f32]; I],
    outs: [&mut [f32]; O],
    f: &impl Fn([f32; I]) -> [f32; O],
) {
    pass(ins, outs, f)
}

pub(super) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU f32 fast paths apply to a tensor: f32, on the CPU, not tracked by autograd.
pub(super) fn fast_path(t: &Tensor) -> bool {
    t.dtype() == DType::F32 && t.device().is_cpu() && !t.track_op()
}

/// Runs `f` on the f32 data of contiguous CPU tensors, read in place; `None` if one is not f32
/// CPU storage.
pub(super) fn with_f32<R>(
    ts: &[Tensor],
    f: impl FnOnce(&[&[f32]]) -> R,
) -> candle_core::Result<Option<R>> {
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices: Vec<&[f32]> = Vec::with_capacity(ts.len());
    for ((storage, layout), t) in guards.iter().zip(ts) {
        match &**storage {
            Storage::Cpu(CpuStorage::F32(v)) => {
                let o = layout.start_offset();
                slices.push(&v[o..o + t.elem_count()]);
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(f(&slices)))
}

/// `out_k[i] = f(in_0[i], in_1[i], …)[k]` over same-shaped f32 CPU tensors that autograd does not
/// track, read in place and split over gim's worker threads. `None` where the fast path does not
/// apply (other dtype or device, tracked tensors, shape mismatch): the caller composes tensor ops.
fn fused<const I: usize, const O: usize>(
    ins: [&Tensor; I],
    f: impl Fn([f32; I]) -> [f32; O] + Sync,
) -> Result<Option<[Tensor; O]>> {
    let shape = ins[0].shape();
    if ins.iter().any(|t| !fast_path(t) || t.shape() != shape) {
        return Ok(None);
    }
    let ins: Vec<Tensor> = ins
        .iter()
        .map(|t| t.contiguous())
        .collect::<candle_core::Result<_>>()?;
    let n = shape.elem_count();
    let outs = with_f32(&ins, |slices| {
        let avx2 = has_avx2();
        super::pool::par_chunks(n, CHUNK, |c, os: [&mut [f32]; O]| {
            let lo = c * CHUNK;
            let ins: [&[f32]; I] = std::array::from_fn(|k| &slices[k][lo..]);
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU supports avx2 and fma (checked at run time).
                unsafe { pass_avx2(ins, os, &f) };
                return;
            }
            let _ = avx2;
            pass(ins, os, &f);
        })
    })?;
    let Some(outs) = outs else {
        return Ok(None);
    };
    let tensors = outs
        .into_iter()
        .map(|v| Tensor::from_vec(v, shape, &Device::Cpu))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(<[Tensor; O]>::try_from(tensors).ok())
}

// ---------------------------------------------------------------- the activations

/// `x · s` for a set GIM gradient scale other than 1, else `x` (the backward engine's scaled
/// gradients; here so that `backward.rs` uses the kernels and not the other way round).
pub(crate) fn scale(x: &Tensor, s: Option<f64>) -> Result<Tensor> {
    match s {
        Some(v) if v != 1.0 => affine(x, v, 0.0),
        _ => Ok(x.clone()),
    }
}

/// `x · mul + add`, candle's `affine` (the same two roundings, `mul` and `add` taken as f32),
/// split over gim's threads where the fast path applies: candle's own runs on one thread, and a
/// forward and backward scale the attention scores, the tempered softmax's input and GIM's
/// gradients 120 times on SmolLM2.
pub(crate) fn affine(x: &Tensor, mul: f64, add: f64) -> Result<Tensor> {
    let (m, a) = (mul as f32, add as f32);
    if let Some([y]) = fused([x], |[v]| [v * m + a])? {
        return Ok(y);
    }
    Ok(x.affine(mul, add)?)
}

/// `a + b` of one shape, candle's sum split over gim's threads where the fast path applies (the
/// residual stream's and the backward's sums); else candle's.
pub(crate) fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if let Some([y]) = fused([a, b], |[x, y]| [x + y])? {
        return Ok(y);
    }
    Ok((a + b)?)
}

/// `act(x)`; one fused pass for GELU-tanh and SiLU on f32 CPU tensors autograd does not track.
pub fn act(a: Activation, x: &Tensor) -> Result<Tensor> {
    let fast = match a {
        Activation::GeluTanh => fused([x], |[x]| [gelu_tanh(x)])?,
        Activation::Silu => fused([x], |[x]| [x * sigmoid(x)])?,
        _ => None,
    };
    if let Some([y]) = fast {
        return Ok(y);
    }
    Ok(match a {
        Activation::GeluTanh => x.gelu()?,
        Activation::Gelu => x.gelu_erf()?,
        Activation::Silu => x.silu()?,
        Activation::Relu => x.relu()?,
    })
}

/// `act(gate) · up`, a gated MLP's hidden activation: one fused pass for GELU-tanh and SiLU on
/// f32 CPU tensors autograd does not track (the same products as the two ops, bit for bit).
pub fn gated(a: Activation, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let fast = match a {
        Activation::GeluTanh => fused([gate, up], |[x, u]| [gelu_tanh(x) * u])?,
        Activation::Silu => fused([gate, up], |[x, u]| [x * sigmoid(x) * u])?,
        _ => None,
    };
    if let Some([y]) = fast {
        return Ok(y);
    }
    Ok((act(a, gate)? * up)?)
}

/// `g · act'(x)` (the plain MLP's activation backward), fused where possible.
pub fn act_bwd(a: Activation, x: &Tensor, g: &Tensor) -> Result<Tensor> {
    let fast = match a {
        Activation::GeluTanh => fused([x, g], |[x, g]| [g * gelu_tanh_and_grad(x).1])?,
        Activation::Silu => fused([x, g], |[x, g]| [g * silu_and_grad(x).1])?,
        _ => None,
    };
    if let Some([d]) = fast {
        return Ok(d);
    }
    Ok((g * act_grad(a, x)?)?)
}

/// Gated MLP backward `down(act(gate) · up)`: from the gradient `g` at the product, returns
/// (gradient at the gate pre-activation × `gate_scale`, gradient at the up output × `up_scale`).
pub fn gated_bwd(
    a: Activation,
    pre: &Tensor,
    up: &Tensor,
    g: &Tensor,
    gate_scale: Option<f64>,
    up_scale: Option<f64>,
) -> Result<(Tensor, Tensor)> {
    let (sg, su) = (
        gate_scale.unwrap_or(1.0) as f32,
        up_scale.unwrap_or(1.0) as f32,
    );
    let fast = match a {
        Activation::GeluTanh => fused([pre, up, g], move |[x, u, g]| {
            let (y, dy) = gelu_tanh_and_grad(x);
            [g * u * dy * sg, g * y * su]
        })?,
        Activation::Silu => fused([pre, up, g], move |[x, u, g]| {
            let (y, dy) = silu_and_grad(x);
            [g * u * dy * sg, g * y * su]
        })?,
        _ => None,
    };
    if let Some([d_g, d_u]) = fast {
        return Ok((d_g, d_u));
    }
    let d_u = scale(&(g * act(a, pre)?)?, up_scale)?;
    let d_g = scale(&(g * up)?.mul(&act_grad(a, pre)?)?, gate_scale)?;
    Ok((d_g, d_u))
}

/// Derivative of the activation, from composed tensor ops (any device and dtype).
pub fn act_grad(a: Activation, x: &Tensor) -> Result<Tensor> {
    Ok(match a {
        Activation::Silu => {
            let s = (x.neg()?.exp()? + 1.0)?.recip()?;
            let one_minus = (1.0 - &s)?;
            (&s * ((x * one_minus)? + 1.0)?)?
        }
        Activation::GeluTanh => {
            let c = (2.0f64 / std::f64::consts::PI).sqrt();
            let x2 = x.sqr()?;
            let inner = ((x * ((&x2 * 0.044715)? + 1.0)?)? * c)?;
            let t = inner.tanh()?;
            let left = ((&t + 1.0)? * 0.5)?;
            let sech2 = (1.0 - t.sqr()?)?;
            let dinner = (((&x2 * (3.0 * 0.044715))? + 1.0)? * c)?;
            (left + ((x * sech2)? * dinner)?.affine(0.5, 0.0)?)?
        }
        Activation::Gelu => {
            let cdf = (((x / std::f64::consts::SQRT_2)?.erf()? + 1.0)? * 0.5)?;
            let pdf = ((x.sqr()? * -0.5)?.exp()? * (1.0 / (2.0 * std::f64::consts::PI).sqrt()))?;
            (cdf + (x * pdf)?)?
        }
        Activation::Relu => x.gt(0.0)?.to_dtype(x.dtype())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Vec<f32> {
        (-200_000..=200_000).map(|i| i as f32 * 1e-4).collect()
    }

    #[test]
    fn exp_and_tanh_are_within_a_few_ulp_of_f64() {
        let mut worst_exp = 0f64;
        let mut worst_tanh = 0f64;
        for x in grid() {
            let e = (x as f64).exp();
            worst_exp = worst_exp.max(((exp_f32(x) as f64) - e).abs() / e);
            let t = (x as f64).tanh();
            let err = ((tanh_f32(x) as f64) - t).abs() / t.abs().max(1e-30);
            worst_tanh = worst_tanh.max(if x == 0.0 { 0.0 } else { err });
        }
        assert!(worst_exp < 4e-7, "exp relative error {worst_exp:e}");
        assert!(worst_tanh < 6e-7, "tanh relative error {worst_tanh:e}");
        assert_eq!(tanh_f32(30.0), 1.0);
        assert_eq!(tanh_f32(-30.0), -1.0);
        assert!(exp_f32(-200.0) >= 0.0 && exp_f32(-200.0) < 1e-37);
    }

    #[test]
    fn fused_kernels_match_the_composed_ops() {
        let xs: Vec<f32> = (0..50_000).map(|i| (i as f32 * 0.37).sin() * 8.0).collect();
        let gs: Vec<f32> = (0..50_000).map(|i| (i as f32 * 0.11).cos()).collect();
        let us: Vec<f32> = (0..50_000).map(|i| (i as f32 * 0.07).sin() * 3.0).collect();
        let t = |v: &Vec<f32>| Tensor::from_vec(v.clone(), (100, 500), &Device::Cpu).unwrap();
        let (x, g, u) = (t(&xs), t(&gs), t(&us));
        let x64 = x.to_dtype(DType::F64).unwrap();
        let g64 = g.to_dtype(DType::F64).unwrap();
        let u64 = u.to_dtype(DType::F64).unwrap();
        let err = |a: &Tensor, b: &Tensor| {
            let a = a.to_dtype(DType::F64).unwrap();
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            let s = b.abs().unwrap().max_all().unwrap();
            d.to_scalar::<f64>().unwrap() / s.to_scalar::<f64>().unwrap()
        };
        // the fused f32 kernels against the f64 composed ops, no worse than candle's own f32 ops
        let close = |fused: &Tensor, composed_f32: Tensor, reference: &Tensor| {
            let (e, c) = (err(fused, reference), err(&composed_f32, reference));
            assert!(
                e < 2e-6 && e <= 2.0 * c.max(5e-7),
                "{:?}: fused {e:e}, candle f32 {c:e}",
                fused.shape()
            );
        };
        // the fast path is really taken for f32 CPU tensors, and not under autograd or for f64
        let var = candle_core::Var::from_tensor(&x).unwrap();
        assert!(fused([&x], |[v]| [v]).unwrap().is_some());
        assert!(fused([&x64], |[v]| [v]).unwrap().is_none());
        assert!(fused([var.as_tensor()], |[v]| [v]).unwrap().is_none());
        assert!(fused([&x, &x.narrow(0, 0, 50).unwrap()], |[v, w]| [v + w])
            .unwrap()
            .is_none());
        // a strided input is read as its contiguous copy
        let xt = x.t().unwrap();
        let [y] = fused([&xt], |[v]| [v * 2.0]).unwrap().unwrap();
        let want: Vec<Vec<f32>> = (xt.contiguous().unwrap() * 2.0).unwrap().to_vec2().unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), want);
        for a in [Activation::GeluTanh, Activation::Silu] {
            // the gated product is the fused activation times `up`, bit for bit
            let bits = |t: &Tensor| -> Vec<u32> {
                let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                v.iter().map(|f| f.to_bits()).collect()
            };
            assert_eq!(
                bits(&gated(a, &x, &u).unwrap()),
                bits(&(act(a, &x).unwrap() * &u).unwrap()),
                "{a:?}: gated differs from act · up"
            );
            close(
                &act(a, &x).unwrap(),
                match a {
                    Activation::GeluTanh => x.gelu().unwrap(),
                    _ => x.silu().unwrap(),
                },
                &act(a, &x64).unwrap(),
            );
            close(
                &act_bwd(a, &x, &g).unwrap(),
                (&g * act_grad(a, &x).unwrap()).unwrap(),
                &act_bwd(a, &x64, &g64).unwrap(),
            );
            let (dg, du) = gated_bwd(a, &x, &u, &g, Some(0.5), Some(0.25)).unwrap();
            let (rg, ru) = gated_bwd(a, &x64, &u64, &g64, Some(0.5), Some(0.25)).unwrap();
            let cg = ((&g * &u).unwrap() * act_grad(a, &x).unwrap())
                .unwrap()
                .affine(0.5, 0.0)
                .unwrap();
            close(&dg, cg, &rg);
            let cu = match a {
                Activation::GeluTanh => (&g * x.gelu().unwrap()).unwrap(),
                _ => (&g * x.silu().unwrap()).unwrap(),
            }
            .affine(0.25, 0.0)
            .unwrap();
            close(&du, cu, &ru);
        }
    }
}
