//! Row-wise fused kernels: the norm backward of the explicit backward (RMSNorm and LayerNorm, with
//! or without the frozen statistic), and the attention softmax and its backward, on f32 CPU
//! tensors that autograd does not track.
//!
//! Composed from candle ops, one norm backward is about ten single-threaded passes that each
//! allocate a tensor of the activation's size, and it runs twice per layer (and once per head for
//! the receiver gradients of edge attribution). Here each row is read once for its statistics and
//! once for its result, in parallel over rows. Everything else (other dtypes and devices, tracked
//! tensors, unexpected shapes) returns `None` and the caller composes candle ops; the explicit
//! backward's tests against autograd and the float64 fixtures cover both paths.

use candle_core::{Device, Tensor};

use super::config::{ModelConfig, NormKind};
use super::kernels::{exp_f32, fast_path, has_avx2, with_f32, CHUNK};
use super::pool::par_chunks;
use candle_core::Result;

/// How an input's rows line up with the output's rows.
#[derive(Clone, Copy)]
enum Rows {
    /// one row per output row
    Full,
    /// one row per `k` consecutive output rows (a residual stream read by `k` heads)
    Shared(usize),
    /// the same row for every output row (a weight vector)
    One,
}

/// Sum of `a[i]·b[i]` in eight lanes (vectorisable).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_centred(a, b, 0.0)
}

/// Sum of `a[i]·(x[i] − mu)` in eight lanes.
#[inline(always)]
fn dot_centred(a: &[f32], x: &[f32], mu: f32) -> f32 {
    let n = a.len().min(x.len());
    let (a, x) = (&a[..n], &x[..n]);
    let mut acc = [0f32; 8];
    let (ac, xc) = (a.chunks_exact(8), x.chunks_exact(8));
    let (ar, xr) = (ac.remainder(), xc.remainder());
    for (p, q) in ac.zip(xc) {
        for k in 0..8 {
            acc[k] += p[k] * (q[k] - mu);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (p, q) in ar.iter().zip(xr) {
        s += p * (q - mu);
    }
    s
}

/// Sum of `a[i]` in eight lanes.
#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let c = a.chunks_exact(8);
    let r = c.remainder();
    for x in c {
        for k in 0..8 {
            acc[k] += x[k];
        }
    }
    acc.iter().sum::<f32>() + r.iter().sum::<f32>()
}

/// Runs `f(input rows, output row)` for every output row of length `d`.
#[inline(always)]
fn each_row<const I: usize>(
    ins: &[(&[f32], Rows); I],
    first_row: usize,
    out: &mut [f32],
    d: usize,
    f: &impl Fn([&[f32]; I], &mut [f32]),
) {
    for (j, o) in out.chunks_exact_mut(d).enumerate() {
        let r = first_row + j;
        let rows: [&[f32]; I] = std::array::from_fn(|k| {
            let (s, how) = ins[k];
            match how {
                Rows::Full => &s[r * d..(r + 1) * d],
                Rows::Shared(n) => &s[(r / n) * d..(r / n + 1) * d],
                Rows::One => &s[..d],
            }
        });
        f(rows, o);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn each_row_avx2<const I: usize>(
    ins: &[(&[f32], Rows); I],
    first_row: usize,
    out: &mut [f32],
    d: usize,
    f: &impl Fn([&[f32]; I], &mut [f32]),
) {
    each_row(ins, first_row, out, d, f)
}

/// Output `[like]`'s shape, rows of its last dimension `d`; `f` fills each output row from the
/// matching rows of the inputs. `None` where the fast path does not apply.
///
/// Every `f` must be an `#[inline(always)]` closure: otherwise it is compiled as a function of its
/// own, without the AVX2 features of `each_row_avx2`, and does not vectorise (softmax's `exp` then
/// called libm's `floorf` per element). `every_rowwise_closure_is_inlined` checks the source.
fn rowwise<const I: usize>(
    like: &Tensor,
    ins: [(&Tensor, Rows); I],
    f: impl Fn([&[f32]; I], &mut [f32]) + Sync,
) -> Result<Option<Tensor>> {
    let shape = like.shape().clone();
    let d = match shape.dims().last() {
        Some(&d) if d > 0 => d,
        _ => return Ok(None),
    };
    let n = shape.elem_count();
    let rows = n / d;
    if ins.iter().any(|(t, _)| !fast_path(t)) || !fast_path(like) {
        return Ok(None);
    }
    for (t, how) in &ins {
        let want = match how {
            Rows::Full => n,
            Rows::Shared(k) if *k > 0 && rows.is_multiple_of(*k) => n / k,
            Rows::Shared(_) => return Ok(None),
            Rows::One => d,
        };
        if t.elem_count() != want || t.dims().last() != Some(&d) {
            return Ok(None);
        }
    }
    let how: [Rows; I] = ins.map(|(_, how)| how);
    let ins: Vec<Tensor> = ins
        .iter()
        .map(|(t, _)| t.contiguous())
        .collect::<Result<_>>()?;
    let out = with_f32(&ins, |slices| {
        let slices: [(&[f32], Rows); I] = std::array::from_fn(|k| (slices[k], how[k]));
        let per_task = (CHUNK / d).max(1);
        let avx2 = has_avx2();
        let [out] = par_chunks(n, per_task * d, |c, [o]| {
            let first = c * per_task;
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU supports avx2 and fma (checked at run time).
                unsafe { each_row_avx2(&slices, first, o, d, &f) };
                return;
            }
            let _ = avx2;
            each_row(&slices, first, o, d, &f);
        });
        out
    })?;
    match out {
        Some(out) => Ok(Some(Tensor::from_vec(out, shape, &Device::Cpu)?)),
        None => Ok(None),
    }
}

/// What a norm computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct NormSpec {
    /// RMSNorm (no centring) rather than LayerNorm
    pub rms: bool,
    pub eps: f64,
    /// the weight acts as `1 + w` (Gemma)
    pub one_plus: bool,
    /// the GIM rule: the statistic is a constant in the backward
    pub freeze: bool,
}

impl NormSpec {
    /// The model's norm, with the statistic frozen or not.
    pub(crate) fn of(cfg: &ModelConfig, freeze: bool) -> Self {
        NormSpec {
            rms: matches!(cfg.norm, NormKind::RmsNorm),
            eps: cfg.norm_eps,
            one_plus: cfg.norm_one_plus,
            freeze,
        }
    }
}

/// Mean and `1/sqrt(var + eps)` of a row (mean 0 and the mean square for RMSNorm).
#[inline(always)]
fn stats(x: &[f32], rms: bool, eps: f32) -> (f32, f32) {
    let d = x.len() as f32;
    let mu = if rms { 0.0 } else { sum(x) / d };
    let var = if rms {
        dot(x, x) / d
    } else {
        // Σ(x − μ)² = Σx² − d·μ² loses digits; centre explicitly
        let mut acc = [0f32; 8];
        let c = x.chunks_exact(8);
        let rest: f32 = c.remainder().iter().map(|v| (v - mu) * (v - mu)).sum();
        for v in c {
            for k in 0..8 {
                acc[k] += (v[k] - mu) * (v[k] - mu);
            }
        }
        (acc.iter().sum::<f32>() + rest) / d
    };
    (mu, 1.0 / (var + eps).sqrt())
}

/// A norm's forward `(x − μ)·inv·w' (+ b)` with `w' = w` or `1 + w`.
pub(crate) fn norm(
    spec: NormSpec,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let eps = spec.eps as f32;
    let wo = if spec.one_plus { 1.0 } else { 0.0 };
    let core = {
        #[inline(always)]
        move |x: &[f32], w: &[f32], out: &mut [f32]| {
            let (mu, inv) = stats(x, spec.rms, eps);
            for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
                *o = (xi - mu) * inv * (wi + wo);
            }
        }
    };
    match b {
        Some(b) => rowwise(
            x,
            [(x, Rows::Full), (w, Rows::One), (b, Rows::One)],
            #[inline(always)]
            move |[x, w, b], out| {
                core(x, w, out);
                for (o, &bi) in out.iter_mut().zip(b) {
                    *o += bi;
                }
            },
        ),
        None => rowwise(x, [(x, Rows::Full), (w, Rows::One)], {
            #[inline(always)]
            move |[x, w], out| core(x, w, out)
        }),
    }
}

/// Input gradient of a norm `y = (x − μ)·inv·w (+ b)` (μ = 0 for RMSNorm) from `dy`; `x` has
/// `dy`'s shape or one row per `k` rows of `dy` (`[b, s, 1, d]` against `[b, s, k, d]`).
pub(crate) fn norm_bwd(
    spec: NormSpec,
    x: &Tensor,
    dy: &Tensor,
    w: &Tensor,
) -> Result<Option<Tensor>> {
    let xrows = if x.shape() == dy.shape() {
        Rows::Full
    } else {
        let (xd, gd) = (x.dims(), dy.dims());
        let r = gd.len();
        if r < 2 || xd.len() != r || xd[..r - 2] != gd[..r - 2] || xd[r - 2] != 1 {
            return Ok(None);
        }
        Rows::Shared(gd[r - 2])
    };
    let eps = spec.eps as f32;
    let wo = if spec.one_plus { 1.0 } else { 0.0 };
    rowwise(
        dy,
        [(x, xrows), (dy, Rows::Full), (w, Rows::One)],
        #[inline(always)]
        move |[x, g, w], out| {
            let d = out.len() as f32;
            // gw = g·w', written to out first
            for ((o, &gi), &wi) in out.iter_mut().zip(g).zip(w) {
                *o = gi * (wi + wo);
            }
            let (mu, inv) = stats(x, spec.rms, eps);
            let mg = if spec.rms { 0.0 } else { sum(out) / d };
            if spec.freeze {
                for o in out.iter_mut() {
                    *o = (*o - mg) * inv;
                }
            } else {
                // m = mean(gw · x̂), x̂ = (x − μ)·inv
                let m = dot_centred(out, x, mu) * inv / d;
                for (o, &xi) in out.iter_mut().zip(x) {
                    *o = (*o - mg - (xi - mu) * inv * m) * inv;
                }
            }
        },
    )
}

/// Rotate-half RoPE over the whole last dimension of `x` `[b, s, heads, d]`, with `cos`/`sin`
/// `[b, s, 1, d]` shared by the heads: `x·cos + (−x₂, x₁)·sin`, or with `transpose` its backward
/// `dy·cos + (b, −a)` for `(a, b) = dy·sin`. The same products and sums in the same order as the
/// composed tensor ops (bit for bit). `None` elsewhere (a partial rotary dimension among them).
pub(crate) fn rope(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    transpose: bool,
) -> Result<Option<Tensor>> {
    let (Ok((b, s, h, d)), Ok((cb, cs, one, cd))) = (x.dims4(), cos.dims4()) else {
        return Ok(None);
    };
    if (cb, cs, one, cd) != (b, s, 1, d) || sin.dims() != cos.dims() || d % 2 != 0 {
        return Ok(None);
    }
    let half = d / 2;
    rowwise(
        x,
        [
            (x, Rows::Full),
            (cos, Rows::Shared(h)),
            (sin, Rows::Shared(h)),
        ],
        #[inline(always)]
        move |[x, c, sn], out| {
            for i in 0..d {
                let (j, sign) = if i < half {
                    (i + half, -1.0f32)
                } else {
                    (i - half, 1.0)
                };
                out[i] = if transpose {
                    // rt[i] = ds[i + half] for i < half, −ds[i − half] after
                    let ds = x[j] * sn[j];
                    x[i] * c[i] + if i < half { ds } else { -ds }
                } else {
                    x[i] * c[i] + (sign * x[j]) * sn[i]
                };
            }
        },
    )
}

/// Softmax over the last dimension. Masked scores (the dtype's minimum) get exactly 0.
pub(crate) fn softmax(x: &Tensor) -> Result<Option<Tensor>> {
    rowwise(x, [(x, Rows::Full)], {
        #[inline(always)]
        |[x], out| {
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            for (o, &v) in out.iter_mut().zip(x) {
                let z = v - max;
                // exp_f32 clamps its argument; below it the true value underflows to 0
                *o = if z < -87.0 { 0.0 } else { exp_f32(z) };
            }
            let r = 1.0 / sum(out);
            for o in out.iter_mut() {
                *o *= r;
            }
        }
    })
}

/// Softmax backward from the probabilities: `scale · s (g − Σ g s)` per row.
pub(crate) fn softmax_bwd(s: &Tensor, g: &Tensor, scale: f64) -> Result<Option<Tensor>> {
    if s.shape() != g.shape() {
        return Ok(None);
    }
    let scale = scale as f32;
    rowwise(g, [(s, Rows::Full), (g, Rows::Full)], {
        #[inline(always)]
        move |[s, g], out| {
            let dot = dot(g, s);
            for ((o, &si), &gi) in out.iter_mut().zip(s).zip(g) {
                *o = scale * si * (gi - dot);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, D};

    fn t(v: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn data(n: usize, seed: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 + seed) * 0.731).sin() * 2.0 + 0.3)
            .collect()
    }

    /// The norm backward in f64 composed ops (the definition).
    fn norm_bwd_ref(spec: NormSpec, x: &Tensor, dy: &Tensor, w: &Tensor) -> Tensor {
        let (x, g, w) = (
            x.to_dtype(DType::F64).unwrap(),
            dy.to_dtype(DType::F64).unwrap(),
            w.to_dtype(DType::F64).unwrap(),
        );
        let w = if spec.one_plus { (w + 1.0).unwrap() } else { w };
        let g = g.broadcast_mul(&w).unwrap();
        let xc = if spec.rms {
            x
        } else {
            x.broadcast_sub(&x.mean_keepdim(D::Minus1).unwrap())
                .unwrap()
        };
        let inv = (xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + spec.eps)
            .unwrap()
            .sqrt()
            .unwrap()
            .recip()
            .unwrap();
        let gc = if spec.rms {
            g.clone()
        } else {
            g.broadcast_sub(&g.mean_keepdim(D::Minus1).unwrap())
                .unwrap()
        };
        if spec.freeze {
            return gc.broadcast_mul(&inv).unwrap();
        }
        let xhat = xc.broadcast_mul(&inv).unwrap();
        let m = g
            .broadcast_mul(&xhat)
            .unwrap()
            .mean_keepdim(D::Minus1)
            .unwrap();
        (gc - xhat.broadcast_mul(&m).unwrap())
            .unwrap()
            .broadcast_mul(&inv)
            .unwrap()
    }

    fn rel(a: &Tensor, b: &Tensor) -> f64 {
        let a = a.to_dtype(DType::F64).unwrap();
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        let s = b.abs().unwrap().max_all().unwrap();
        d.to_scalar::<f64>().unwrap() / s.to_scalar::<f64>().unwrap()
    }

    #[test]
    fn norm_forward_matches_the_f64_definition() {
        let (rows, d) = (30, 77);
        // a large common offset: LayerNorm must centre before squaring
        let xs: Vec<f32> = data(rows * d, 1.0).iter().map(|v| v + 40.0).collect();
        let x = t(xs, &[3, 10, d]);
        let w = t(data(d, 2.0), &[d]);
        let b = t(data(d, 7.0), &[d]);
        let x64 = x.to_dtype(DType::F64).unwrap();
        let (w64, b64) = (
            w.to_dtype(DType::F64).unwrap(),
            b.to_dtype(DType::F64).unwrap(),
        );
        for rms in [true, false] {
            for one_plus in [true, false] {
                let spec = NormSpec {
                    rms,
                    eps: 1e-5,
                    one_plus,
                    freeze: false,
                };
                let bias = (!rms).then_some(&b);
                let got = norm(spec, &x, &w, bias).unwrap().unwrap();
                let xc = if rms {
                    x64.clone()
                } else {
                    x64.broadcast_sub(&x64.mean_keepdim(D::Minus1).unwrap())
                        .unwrap()
                };
                let inv = (xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-5)
                    .unwrap()
                    .sqrt()
                    .unwrap()
                    .recip()
                    .unwrap();
                let ww = if one_plus {
                    (&w64 + 1.0).unwrap()
                } else {
                    w64.clone()
                };
                let mut want = xc.broadcast_mul(&inv).unwrap().broadcast_mul(&ww).unwrap();
                if !rms {
                    want = want.broadcast_add(&b64).unwrap();
                }
                // the f32 mean of values near 40 is good to ~1e-6 of their spread of ~2
                let e = rel(&got, &want);
                assert!(e < 5e-6, "{spec:?}: {e:e}");
            }
        }
    }

    #[test]
    fn norm_backward_matches_the_f64_definition() {
        let (b, s, h, d) = (2, 5, 3, 77);
        let x = t(data(b * s * d, 1.0), &[b, s, d]);
        let g = t(data(b * s * d, 9.0), &[b, s, d]);
        let gh = t(data(b * s * h * d, 4.0), &[b, s, h, d]);
        let w = t(data(d, 2.0), &[d]);
        for rms in [true, false] {
            for freeze in [true, false] {
                for one_plus in [true, false] {
                    let spec = NormSpec {
                        rms,
                        eps: 1e-5,
                        one_plus,
                        freeze,
                    };
                    let got = norm_bwd(spec, &x, &g, &w).unwrap().unwrap();
                    let e = rel(&got, &norm_bwd_ref(spec, &x, &g, &w));
                    assert!(e < 2e-6, "{spec:?}: {e:e}");
                    // one residual row per head: x [b, s, 1, d] against dy [b, s, h, d]
                    let x1 = x.unsqueeze(2).unwrap();
                    let got = norm_bwd(spec, &x1, &gh, &w).unwrap().unwrap();
                    let want = norm_bwd_ref(
                        spec,
                        &x1.broadcast_as((b, s, h, d)).unwrap().contiguous().unwrap(),
                        &gh,
                        &w,
                    );
                    let e = rel(&got, &want);
                    assert!(e < 2e-6, "{spec:?} per head: {e:e}");
                }
            }
        }
        // not taken: f64, mismatched shapes
        let spec = NormSpec {
            rms: true,
            eps: 1e-6,
            one_plus: false,
            freeze: false,
        };
        let x64 = x.to_dtype(DType::F64).unwrap();
        assert!(norm_bwd(spec, &x64, &g, &w).unwrap().is_none());
        assert!(norm_bwd(spec, &x.narrow(1, 0, 2).unwrap(), &g, &w)
            .unwrap()
            .is_none());
    }

    #[test]
    fn every_rowwise_closure_is_inlined() {
        // the attribute (see `rowwise`) within the first lines of every call, and on `norm`'s
        // shared `core`; each piece of the split ends where the next call starts
        let src = include_str!("row_kernels.rs");
        let body = &src[..src.find("#[cfg(test)]").unwrap_or(src.len())];
        let calls: Vec<&str> = body.split("rowwise(").skip(1).collect();
        assert_eq!(calls.len(), 6, "rowwise calls");
        for call in calls
            .iter()
            .chain(body.split("let core = ").skip(1).collect::<Vec<_>>().iter())
        {
            let head: String = call.chars().take(400).collect();
            assert!(
                head.contains("#[inline(always)]"),
                "a row closure without #[inline(always)]: rowwise({}",
                head.chars().take(120).collect::<String>()
            );
        }
    }

    #[test]
    fn softmax_and_its_backward_match_the_f64_definition() {
        let (rows, n) = (40, 33);
        let mut xs = data(rows * n, 3.0);
        xs[5] = f32::MIN; // a masked score
        let x = t(xs, &[2, 20, n]);
        let s = softmax(&x).unwrap().unwrap();
        let x64 = x.to_dtype(DType::F64).unwrap();
        let max = x64.max_keepdim(D::Minus1).unwrap();
        let e = x64.broadcast_sub(&max).unwrap().exp().unwrap();
        let s_ref = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
        let err = rel(&s, &s_ref);
        assert!(err < 1e-6, "softmax: {err:e}");
        assert_eq!(s.flatten_all().unwrap().to_vec1::<f32>().unwrap()[5], 0.0);
        let g = t(data(rows * n, 5.0), &[2, 20, n]);
        let got = softmax_bwd(&s, &g, 0.125).unwrap().unwrap();
        let (s64, g64) = (
            s.to_dtype(DType::F64).unwrap(),
            g.to_dtype(DType::F64).unwrap(),
        );
        let dot = (&g64 * &s64).unwrap().sum_keepdim(D::Minus1).unwrap();
        let want = ((s64 * g64.broadcast_sub(&dot).unwrap()).unwrap() * 0.125).unwrap();
        let e = rel(&got, &want);
        assert!(e < 2e-6, "softmax backward: {e:e}");
    }
}
