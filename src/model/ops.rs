//! Custom autograd ops: identity forwards with modified backwards.
//!
//! candle's fused ops (softmax_last_dim, rms_norm, rope) record no backward, and a
//! "straight-through" `a + (b - b.detach())` gives NaN under masks (see shared/CANDLE.md).
//! So every GIM rule is an op whose forward *copies* a value computed by ordinary tensor ops
//! (bit-identical forward with and without rules) and whose backward is ours. The copy uses
//! `BackendStorage::affine(.., 1, 0)`, which every backend implements, so the ops run on any
//! candle device.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D};

use super::weights::Weight;

/// A place where a backward pass leaves the gradient that reached a tensor.
pub type GradSlot = Arc<Mutex<Option<Tensor>>>;

/// Identity forward; backward multiplies the gradient by `scale` and, if a slot is given,
/// records the gradient that arrived (before scaling).
struct IdentityGrad {
    scale: f64,
    slot: Option<GradSlot>,
}

impl CustomOp1 for IdentityGrad {
    fn name(&self) -> &'static str {
        "gim-identity-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((s.affine(l, 1.0, 0.0)?, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Ok((s.affine(l, 1.0, 0.0)?, l.shape().clone()))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        s: &candle_core::MetalStorage,
        l: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        Ok((s.affine(l, 1.0, 0.0)?, l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if let Some(slot) = &self.slot {
            if let Ok(mut g) = slot.lock() {
                *g = Some(match g.take() {
                    Some(prev) => (prev + grad)?,
                    None => grad.clone(),
                });
            }
        }
        if self.scale == 1.0 {
            Ok(Some(grad.clone()))
        } else {
            Ok(Some(grad.affine(self.scale, 0.0)?))
        }
    }
}

/// Identity forward, gradient multiplied by `scale` (the Q/K/V and gate/up rules).
pub fn scale_grad(x: &Tensor, scale: f64) -> Result<Tensor> {
    // untracked (the explicit backward, inference): no graph will reach the op's backward
    if scale == 1.0 || !x.track_op() {
        return Ok(x.clone());
    }
    x.apply_op1(IdentityGrad { scale, slot: None })
}

/// Identity forward; the gradient reaching `x` is stored in the returned slot during backward.
pub fn grad_tap(x: &Tensor) -> Result<(Tensor, GradSlot)> {
    let slot: GradSlot = Arc::new(Mutex::new(None));
    let y = x.apply_op1(IdentityGrad {
        scale: 1.0,
        slot: Some(slot.clone()),
    })?;
    Ok((y, slot))
}

/// Backward rules attached to a value computed outside the graph.
enum Attached {
    /// `res = softmax(x)`; backward `s_T * (g - sum(g * s_T))`, `s_T = softmax(x / T)`.
    TemperedSoftmax { temperature: f64 },
    /// `res = x @ wᵀ (+ b)` with a constant weight: backward only `g @ w`, no weight gradient.
    ConstLinear { weight: Weight },
}

struct Attach(Attached);

impl CustomOp2 for Attach {
    fn name(&self) -> &'static str {
        "gim-attach"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((s2.affine(l2, 1.0, 0.0)?, l2.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _s1: &candle_core::CudaStorage,
        _l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Ok((s2.affine(l2, 1.0, 0.0)?, l2.shape().clone()))
    }

    #[cfg(feature = "metal")]
    fn metal_fwd(
        &self,
        _s1: &candle_core::MetalStorage,
        _l1: &Layout,
        s2: &candle_core::MetalStorage,
        l2: &Layout,
    ) -> Result<(candle_core::MetalStorage, Shape)> {
        Ok((s2.affine(l2, 1.0, 0.0)?, l2.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _value: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        match &self.0 {
            Attached::TemperedSoftmax { temperature } => Ok((
                Some(tempered_softmax_bwd(x, res, grad, *temperature, 1.0)?),
                None,
            )),
            Attached::ConstLinear { weight } => Ok((Some(input_grad(grad, weight)?), None)),
        }
    }
}

/// Input gradient of a linear layer `y = x Wᵀ`: `dy @ W` for `dy` `[.., out]` and `w` `[out, in]`.
///
/// On f32 CPU tensors this is [`super::gemm`]'s product on gim's threads, reading `w`'s strips
/// (`strips.rs`) or `w` in place. Elsewhere: candle's gemm is slow with a row-major right operand
/// and few rows, so short inputs compute `(Wᵀ dyᵀ)ᵀ`, whose operands it reads in its fast layout
/// (2.5× on the 1B shape's MLP at 32 tokens; slower from ~128 rows on). Both engines' backward
/// go through here.
pub fn input_grad(dy: &Tensor, w: &Weight) -> Result<Tensor> {
    let out = dy.dim(D::Minus1)?;
    let rows = dy.elem_count() / out.max(1);
    let dy2 = dy.reshape((rows, out))?;
    let g = match w {
        Weight::Strips(s) => match s.input_grad(&dy2)? {
            Some(g) => g,
            None => row_major_input_grad(&dy2, &s.tensor()?)?,
        },
        Weight::Tensor(w) => row_major_input_grad(&dy2, w)?,
    };
    let mut dims = dy.dims().to_vec();
    let last = dims.len() - 1;
    dims[last] = w.dims()?.1;
    g.reshape(dims)
}

/// [`input_grad`] of `dy2` `[rows, out]` with a `[out, in]` tensor.
fn row_major_input_grad(dy2: &Tensor, w: &Tensor) -> Result<Tensor> {
    let rows = dy2.dim(0)?;
    if let Some(g) = super::gemm::try_matmul(dy2, w)? {
        Ok(g)
    } else if rows <= 64 {
        w.t()?.matmul(&dy2.t()?)?.t()?.contiguous()
    } else {
        dy2.matmul(w)
    }
}

/// The dtype in which softmax, norms and log-probabilities of a `dtype` tensor are computed:
/// f64 stays f64 (the float64 test models keep full precision), everything else (f32, bf16,
/// f16) computes in f32. The one copy of this rule (model, backward and attribution use it).
pub fn compute_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// Softmax over the last dimension from differentiable primitives (one fused pass for f32 CPU
/// tensors that autograd does not track).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if let Some(y) = super::row_kernels::softmax(x)? {
        return Ok(y);
    }
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&sum)
}

/// Attention softmax (computed in f32, or f64 for f64 inputs) whose backward uses temperature `t`.
/// `t == 1` gives the ordinary softmax gradient; the forward never depends on `t`.
pub fn tempered_softmax(x: &Tensor, temperature: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(compute_dtype(dtype))?;
    let s = softmax_last_dim(&xf.detach())?;
    if !xf.track_op() {
        // no graph will reach the attached backward: the probabilities themselves
        return s.to_dtype(dtype);
    }
    let y = xf.apply_op2(&s, Attach(Attached::TemperedSoftmax { temperature }))?;
    y.to_dtype(dtype)
}

/// The tempered softmax backward times `scale`: `scale · s_T (g − Σ g s_T)` with
/// `s_T = softmax(x / T)` (the forward's probabilities `probs` when `T` = 1), computed in f32 (f64
/// for f64 gradients). Both engines' backward go through here.
pub fn tempered_softmax_bwd(
    x: &Tensor,
    probs: &Tensor,
    g: &Tensor,
    temperature: f64,
    scale: f64,
) -> Result<Tensor> {
    let dtype = g.dtype();
    let ft = compute_dtype(dtype);
    let s = if temperature == 1.0 {
        probs.to_dtype(ft)?
    } else {
        let x = super::kernels::affine(&x.to_dtype(ft)?, 1.0 / temperature, 0.0)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        softmax_last_dim(&x)?
    };
    let g = g.to_dtype(ft)?;
    if let Some(d) = super::row_kernels::softmax_bwd(&s, &g, scale)? {
        return d.to_dtype(dtype);
    }
    let dot = (&g * &s)?.sum_keepdim(D::Minus1)?;
    let d = (s * g.broadcast_sub(&dot)?)?;
    let d = if scale == 1.0 { d } else { (d * scale)? };
    d.to_dtype(dtype)
}

/// `x @ wᵀ + b` (w: `[out, in]`). With a constant (non-`Var`) weight the backward computes only
/// the input gradient; with a trainable weight it falls back to ordinary autograd.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    linear_w(x, &Weight::Tensor(w.clone()), b)
}

/// [`linear`] with a linear layer's [`Weight`] (a tensor or strips).
pub fn linear_w(x: &Tensor, w: &Weight, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let inp = dims[dims.len() - 1];
    let rows = x.elem_count() / inp.max(1);
    let out = w.dims()?.0;
    let mut out_dims = dims.clone();
    let last = out_dims.len() - 1;
    out_dims[last] = out;
    let trainable =
        matches!(w, Weight::Tensor(t) if t.track_op()) || b.map(|b| b.track_op()).unwrap_or(false);
    let compute = |x2: &Tensor| -> Result<Tensor> {
        let y = match w {
            Weight::Strips(s) => match s.forward(x2)? {
                Some(y) => y,
                None => x2.matmul(&s.tensor()?.t()?)?,
            },
            Weight::Tensor(w) => match super::gemm::try_matmul(x2, &w.t()?)? {
                Some(y) => y,
                None => x2.matmul(&w.t()?)?,
            },
        };
        match b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    };
    let x2 = x.reshape((rows, inp))?;
    let y = if trainable || !x.track_op() {
        compute(&x2)?
    } else {
        let value = compute(&x2.detach())?;
        x2.apply_op2(&value, Attach(Attached::ConstLinear { weight: w.clone() }))?
    };
    y.reshape(out_dims)
}
