//! Fused element-wise kernels for the MLP activations: a CPU fast path for f32 and the composed
//! candle ops everywhere else (other devices, other dtypes, and tensors that autograd tracks).
//!
//! candle runs unary ops on one thread with libm's scalar `tanhf`/`expf`, and the activation
//! derivative of the backward is a chain of ~12 tensor ops. On the GPT-2-small shape that was a
//! fifth of an attribution. Here each activation (and its backward, fused with the upstream
//! gradient) is one pass over the data, split over the rayon threads, with a branch-free
//! Cephes-style `exp`/`tanh` that the compiler vectorises. Their accuracy against f64 is tested
//! (a few ulp); f64 models and the autograd reference engine never take this path.

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use rayon::prelude::*;

use super::config::Activation;
use crate::error::Result;

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 14;

// ---------------------------------------------------------------- scalar math (vectorisable)

/// `e^x` in f32: Cephes `expf` (range reduction by ln 2, degree-6 polynomial), branch-free.
// the constants are Cephes' as published
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.7);
    let n = (x * LOG2E).round();
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

#[inline(always)]
fn gelu_tanh_grad(x: f32) -> f32 {
    let x2 = x * x;
    let t = tanh_f32(GELU_C * x * (1.0 + GELU_A * x2));
    let dinner = GELU_C * (1.0 + 3.0 * GELU_A * x2);
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

#[inline(always)]
fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

#[inline(always)]
fn silu_grad(x: f32) -> f32 {
    let s = sigmoid(x);
    s * (1.0 + x * (1.0 - s))
}

// ---------------------------------------------------------------- slice loops

macro_rules! simd_loop {
    ($name:ident, $name_avx:ident, |$($arg:ident),*| $body:expr, ($($ins:ident),*) -> ($($outs:ident),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name_avx($($ins: &[f32],)* $($outs: &mut [f32],)* scales: (f32, f32)) {
            $name($($ins,)* $($outs,)* scales)
        }
        #[inline(always)]
        fn $name($($ins: &[f32],)* $($outs: &mut [f32],)* scales: (f32, f32)) {
            let _ = scales;
            let n = [$($ins.len()),*][0];
            for i in 0..n {
                $(let $arg = $ins[i];)*
                let r = $body(scales);
                let ($($outs,)*) = ($(&mut $outs[i],)*);
                simd_loop!(@assign r, $($outs),*);
            }
        }
    };
    (@assign $r:ident, $o:ident) => { *$o = $r; };
    (@assign $r:ident, $o1:ident, $o2:ident) => { *$o1 = $r.0; *$o2 = $r.1; };
}

simd_loop!(l_gelu, l_gelu_avx, |x| |_s: (f32, f32)| gelu_tanh(x), (xs) -> (out));
simd_loop!(l_silu, l_silu_avx, |x| |_s: (f32, f32)| silu(x), (xs) -> (out));
simd_loop!(l_gelu_bwd, l_gelu_bwd_avx, |x, g| |_s: (f32, f32)| g * gelu_tanh_grad(x), (xs, gs) -> (out));
simd_loop!(l_silu_bwd, l_silu_bwd_avx, |x, g| |_s: (f32, f32)| g * silu_grad(x), (xs, gs) -> (out));
// gated MLP: (d_gate, d_up) = (g·up·act'(pre)·gate_scale, g·act(pre)·up_scale)
simd_loop!(l_swiglu_bwd, l_swiglu_bwd_avx,
    |x, u, g| |s: (f32, f32)| (g * u * silu_grad(x) * s.0, g * silu(x) * s.1),
    (xs, us, gs) -> (dg, du));
simd_loop!(l_geglu_bwd, l_geglu_bwd_avx,
    |x, u, g| |s: (f32, f32)| (g * u * gelu_tanh_grad(x) * s.0, g * gelu_tanh(x) * s.1),
    (xs, us, gs) -> (dg, du));

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Dispatch a slice loop to its AVX2 build where the CPU has it.
macro_rules! run {
    ($plain:ident, $avx:ident, $($a:expr),*) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx2() {
                // SAFETY: the CPU supports avx2 and fma (checked at run time).
                unsafe { $avx($($a),*) }
            } else {
                $plain($($a),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $plain($($a),*)
        }
    }};
}

// ---------------------------------------------------------------- tensor plumbing

/// The contiguous f32 CPU data of `t`, or `None` where the fast path does not apply.
fn cpu_f32(t: &Tensor) -> Option<Vec<f32>> {
    if t.dtype() != DType::F32 || !t.device().is_cpu() || t.track_op() {
        return None;
    }
    let t = t.contiguous().ok()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => {
            let o = layout.start_offset();
            Some(v[o..o + t.elem_count()].to_vec())
        }
        _ => None,
    }
}

fn to_tensor(v: Vec<f32>, like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(v, like.shape(), &Device::Cpu)?)
}

fn fast_activation(a: Activation) -> bool {
    matches!(a, Activation::GeluTanh | Activation::Silu)
}

/// `act(x)`; the fused kernel for f32 CPU tensors that autograd does not track.
pub fn act(a: Activation, x: &Tensor) -> Result<Tensor> {
    if fast_activation(a) {
        if let Some(xs) = cpu_f32(x) {
            let mut out = vec![0f32; xs.len()];
            out.par_chunks_mut(CHUNK)
                .zip(xs.par_chunks(CHUNK))
                .for_each(|(o, x)| match a {
                    Activation::GeluTanh => run!(l_gelu, l_gelu_avx, x, o, (1.0, 1.0)),
                    _ => run!(l_silu, l_silu_avx, x, o, (1.0, 1.0)),
                });
            return to_tensor(out, x);
        }
    }
    Ok(match a {
        Activation::GeluTanh => x.gelu()?,
        Activation::Gelu => x.gelu_erf()?,
        Activation::Silu => x.silu()?,
        Activation::Relu => x.relu()?,
    })
}

/// `g · act'(x)` (the plain MLP's activation backward), fused where possible.
pub fn act_bwd(a: Activation, x: &Tensor, g: &Tensor) -> Result<Tensor> {
    if fast_activation(a) && x.shape() == g.shape() {
        if let (Some(xs), Some(gs)) = (cpu_f32(x), cpu_f32(g)) {
            let mut out = vec![0f32; xs.len()];
            out.par_chunks_mut(CHUNK)
                .zip(xs.par_chunks(CHUNK).zip(gs.par_chunks(CHUNK)))
                .for_each(|(o, (x, g))| match a {
                    Activation::GeluTanh => run!(l_gelu_bwd, l_gelu_bwd_avx, x, g, o, (1.0, 1.0)),
                    _ => run!(l_silu_bwd, l_silu_bwd_avx, x, g, o, (1.0, 1.0)),
                });
            return to_tensor(out, x);
        }
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
    gate_scale: f64,
    up_scale: f64,
) -> Result<(Tensor, Tensor)> {
    if fast_activation(a) && pre.shape() == g.shape() && up.shape() == g.shape() {
        if let (Some(xs), Some(us), Some(gs)) = (cpu_f32(pre), cpu_f32(up), cpu_f32(g)) {
            let mut dg = vec![0f32; xs.len()];
            let mut du = vec![0f32; xs.len()];
            let s = (gate_scale as f32, up_scale as f32);
            dg.par_chunks_mut(CHUNK)
                .zip(du.par_chunks_mut(CHUNK))
                .zip(
                    xs.par_chunks(CHUNK)
                        .zip(us.par_chunks(CHUNK))
                        .zip(gs.par_chunks(CHUNK)),
                )
                .for_each(|((dg, du), ((x, u), g))| match a {
                    Activation::GeluTanh => {
                        run!(l_geglu_bwd, l_geglu_bwd_avx, x, u, g, dg, du, s)
                    }
                    _ => run!(l_swiglu_bwd, l_swiglu_bwd_avx, x, u, g, dg, du, s),
                });
            return Ok((to_tensor(dg, pre)?, to_tensor(du, pre)?));
        }
    }
    let sc =
        |t: Tensor, v: f64| -> Result<Tensor> { Ok(if v == 1.0 { t } else { t.affine(v, 0.0)? }) };
    let d_u = sc((g * act(a, pre)?)?, up_scale)?;
    let d_g = sc((g * up)?.mul(&act_grad(a, pre)?)?, gate_scale)?;
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
        for a in [Activation::GeluTanh, Activation::Silu] {
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
            let (dg, du) = gated_bwd(a, &x, &u, &g, 0.5, 0.25).unwrap();
            let (rg, ru) = gated_bwd(a, &x64, &u64, &g64, 0.5, 0.25).unwrap();
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
