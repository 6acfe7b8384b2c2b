//! A linear layer's weight laid out for the products of `gemm.rs`: in strips of 64 columns.
//!
//! `W` is `[out, in]`. Read row-major, the panels of its input gradient `dy · W` (64 of `W`'s
//! columns, every row) are 256-byte pieces of rows 2–6 KiB apart, which the hardware does not
//! prefetch: on SmolLM2 those row copies were the largest cost of a GIM attribution's products
//! after the kernel itself, and copying the same panels from one contiguous block made GIM 7.5%
//! faster (median of in-process alternations; docs/bench.md, session 10). So here strip `s`
//! (columns `64s .. 64s + w`, `w` = 64 but for a narrower last strip) is stored whole, `[out, w]`
//! row-major, one strip after another: a backward panel is one strip, a contiguous block, and a
//! forward panel (`x · Wᵀ`: 64 of `W`'s rows, transposed) is a 64 × 64 block of each strip, 16 KiB
//! contiguous.
//!
//! With at least `gemm::TILE_MIN_ROWS` rows each element is gim's one chain of fused
//! multiply-adds over `k` (`tile.rs`): the same bits as the products of `W` read row-major
//! (tested). Fewer rows (a generated token): the forward is AVX-512 dot products over a row's
//! strips ([`Strips::dots`]), the input gradient (and the forward without AVX-512 or with strided
//! rows) the `gemm` crate on each strip's part: close to candle's sums, not its bits.

use candle_core::{Device, Result, Tensor};

use super::gemm::{self, OutPtr, Ptr};
use super::kernels::{fast_path, with_f32};
use super::tile;

/// A kernel of [`Strips::dots`].
type Dots = unsafe fn(&Strips, *const f32, std::ops::Range<usize>, *mut f32);

/// Columns per strip: one panel of the kernel.
const STRIP: usize = tile::PANEL;

/// `W [out, in]` in strips of [`STRIP`] columns (see the module doc).
pub struct Strips {
    data: Vec<f32>,
    out: usize,
    inp: usize,
}

impl std::fmt::Debug for Strips {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Strips([{}, {}])", self.out, self.inp)
    }
}

impl Strips {
    /// `w` `[out, in]` in strips, where gim's products run on it (f32 on the CPU, not tracked by
    /// autograd, `GIM_GEMM` not `candle`); `None` elsewhere.
    pub(crate) fn of(w: &Tensor) -> Result<Option<Strips>> {
        if !gemm::enabled() || !fast_path(w) || w.rank() != 2 {
            return Ok(None);
        }
        let (out, inp) = w.dims2()?;
        if out == 0 || inp == 0 {
            return Ok(None);
        }
        // read in place (a strided `w` made contiguous first): one copy, into the strips
        let w = if w.is_contiguous() {
            w.clone()
        } else {
            w.contiguous()?
        };
        let data = with_f32(&[w], |v| {
            let mut data = Vec::with_capacity(out * inp);
            for c0 in (0..inp).step_by(STRIP) {
                let c1 = (c0 + STRIP).min(inp);
                for row in v[0].chunks_exact(inp) {
                    data.extend_from_slice(&row[c0..c1]);
                }
            }
            data
        })?;
        Ok(data.map(|data| Strips { data, out, inp }))
    }

    /// `(out, in)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.out, self.inp)
    }

    /// The weight as a `[out, in]` tensor (a copy), for the products `gemm.rs` does not run.
    pub fn tensor(&self) -> Result<Tensor> {
        let mut v = vec![0f32; self.out * self.inp];
        for s in 0..self.inp.div_ceil(STRIP) {
            let (off, ws) = self.strip(s);
            let strip = &self.data[off..off + self.out * ws];
            for (o, piece) in strip.chunks_exact(ws).enumerate() {
                let at = o * self.inp + s * STRIP;
                v[at..at + ws].copy_from_slice(piece);
            }
        }
        Tensor::from_vec(v, (self.out, self.inp), &Device::Cpu)
    }

    /// Strip `s`'s first value and width.
    fn strip(&self, s: usize) -> (usize, usize) {
        (s * STRIP * self.out, STRIP.min(self.inp - s * STRIP))
    }

    /// `x · Wᵀ` `[rows, out]` for `x` `[rows, in]` (f32 on the CPU, untracked); `None` elsewhere.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Option<Tensor>> {
        self.product(x, false)
    }

    /// `dy · W` `[rows, in]` for `dy` `[rows, out]` (f32 on the CPU, untracked); `None` elsewhere.
    pub(crate) fn input_grad(&self, dy: &Tensor) -> Result<Option<Tensor>> {
        self.product(dy, true)
    }

    fn product(&self, a: &Tensor, grad: bool) -> Result<Option<Tensor>> {
        let (k, n) = if grad {
            (self.out, self.inp)
        } else {
            (self.inp, self.out)
        };
        if !gemm::enabled() || !fast_path(a) || a.rank() != 2 {
            return Ok(None);
        }
        let (m, ka) = a.dims2()?;
        if ka != k || m == 0 {
            return Ok(None);
        }
        let Some(opa) = gemm::operand(a, 1, m, k) else {
            return Ok(None);
        };
        let (pa, sa) = (opa.ptr, opa.s);
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        let o = OutPtr(out.as_mut_ptr());
        let pw = Ptr(self.data.as_ptr());
        let threads = gemm::threads_for(m * n * k);
        // the pieces of W's columns j0..j1 that lie in one strip each: (column, width, strip's
        // first value, strip's width)
        let pieces = |j0: usize, j1: usize| {
            let mut j = j0;
            std::iter::from_fn(move || {
                if j >= j1 {
                    return None;
                }
                let s = j / STRIP;
                let (off, ws) = self.strip(s);
                let take = (s * STRIP + ws).min(j1) - j;
                let piece = (j, take, off + (j - s * STRIP), ws);
                j += take;
                Some(piece)
            })
        };
        if m >= gemm::TILE_MIN_ROWS {
            let fill = |_item: usize, c: usize, w: usize, p: *mut f32, wp: usize| {
                // SAFETY: every index below lies inside `data` (out·in values: strip s holds
                // out·ws of them from s·64·out on), and `p` has room for k rows wp apart
                // (`gemm::tiled`).
                unsafe {
                    if grad {
                        // W's columns c..c+w: when they are one whole strip as wide as its
                        // panel (every whole panel), the strip is the panel, read where it lies
                        // (3.5% faster GIM on SmolLM2 than copying it); else copied from the
                        // strips they lie in
                        for (j, take, first, ws) in pieces(c, c + w) {
                            let src = pw.get().add(first);
                            if take == w && ws == w && wp == w {
                                return Some(src);
                            }
                            for kk in 0..k {
                                std::ptr::copy_nonoverlapping(
                                    src.add(kk * ws),
                                    p.add(kk * wp + (j - c)),
                                    take,
                                );
                            }
                        }
                    } else {
                        // W's rows c..c+w, transposed: a w × ws block of each strip
                        for s in 0..k.div_ceil(STRIP) {
                            let (off, ws) = self.strip(s);
                            super::transpose::transpose(
                                pw.get().add(off + c * ws),
                                ws,
                                w,
                                ws,
                                p.add(s * STRIP * wp),
                                wp,
                            );
                        }
                    }
                }
                None
            };
            // SAFETY: `a` lies inside its storage (`Operand`), `out` has room for m·n values,
            // and `fill` writes each panel's k × w values.
            unsafe { gemm::tiled((1, m, k, n), pa, sa, o, threads, &fill) };
        } else {
            // the `gemm` crate on each task's block of output columns, strip by strip
            let blocks = gemm::FewRows::new(n, threads, 1);
            gemm::each(threads, blocks.parts, &|t: usize| {
                let Some((c0, c1)) = blocks.columns(t) else {
                    return;
                };
                let (o, pa, pw) = (o, pa, pw);
                // SAFETY: `a` lies inside its storage (`Operand`), the strips' pieces inside
                // `data`, and this task writes only the output's columns c0..c1 (of m·n).
                unsafe {
                    if grad {
                        for (j, take, first, ws) in pieces(c0, c1) {
                            gemm::gemm_f32(
                                (m, take, k),
                                (o.0.add(j), n, false),
                                (pa.0, sa.col, sa.row),
                                (pw.0.add(first), 1, ws),
                            );
                        }
                    } else if let Some(dots) = Strips::dots().filter(|_| sa.col == 1) {
                        for r in 0..m {
                            dots(self, pa.0.add(r * sa.row), c0..c1, o.0.add(r * n));
                        }
                    } else {
                        for s in 0..k.div_ceil(STRIP) {
                            let (off, ws) = self.strip(s);
                            gemm::gemm_f32(
                                (m, c1 - c0, ws),
                                (o.0.add(c0), n, s > 0),
                                (pa.0.add(s * STRIP * sa.col), sa.col, sa.row),
                                (pw.0.add(off + c0 * ws), ws, 1),
                            );
                        }
                    }
                }
            });
        }
        drop(opa);
        // SAFETY: the tasks above wrote all m·n values: every row × the column blocks, which tile
        // 0..n (the forward's first strip writes, the others add).
        unsafe { out.set_len(m * n) };
        Ok(Some(Tensor::from_vec(out, (m, n), &Device::Cpu)?))
    }
}

impl Strips {
    /// A kernel for `y[o] = Σ_kk x[kk] · W[o][kk]` over `W`'s rows `o` in `rows`: one row of `x`
    /// (contiguous) against `W`, a generated token's forward, in AVX-512 dot products over all
    /// the strips (each row's sums in one fixed order). The `gemm` crate, called once per strip,
    /// spent more time setting up than multiplying there: 64 tokens of `gim generate` took
    /// 2.4–2.7 s instead of 1.9–2.3 s with row-major weights. `None` without AVX-512 (the `gemm`
    /// crate then).
    ///
    /// Safety of the kernel: `x` readable at `kk < in`, `y` writable at every `o` in `rows`,
    /// `rows.end ≤ out`.
    fn dots() -> Option<Dots> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            return Some(Strips::dots_avx512);
        }
        None
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn dots_avx512(&self, x: *const f32, rows: std::ops::Range<usize>, y: *mut f32) {
        use std::arch::x86_64::*;
        let strips = self.inp.div_ceil(STRIP);
        for o in rows {
            let mut acc = _mm512_setzero_ps();
            for s in 0..strips {
                let (off, ws) = self.strip(s);
                // SAFETY: strip s's row o holds ws values inside `data`; x's 64s.. 64s+ws
                // (the caller's bounds); the masked loads read only the first `ws - j` lanes
                unsafe {
                    let w = self.data.as_ptr().add(off + o * ws);
                    let xs = x.add(s * STRIP);
                    let mut j = 0;
                    while j + 16 <= ws {
                        let (a, b) = (_mm512_loadu_ps(xs.add(j)), _mm512_loadu_ps(w.add(j)));
                        acc = _mm512_fmadd_ps(a, b, acc);
                        j += 16;
                    }
                    if j < ws {
                        let mask: __mmask16 = (1u16 << (ws - j)) - 1;
                        let a = _mm512_maskz_loadu_ps(mask, xs.add(j));
                        let b = _mm512_maskz_loadu_ps(mask, w.add(j));
                        acc = _mm512_fmadd_ps(a, b, acc);
                    }
                }
            }
            // SAFETY: the caller's bounds
            unsafe { *y.add(o) = _mm512_reduce_add_ps(acc) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gemm::tests::{bits, rel_err as rel};
    use candle_core::DType;

    /// Strips hold the weight (round trip), and their products are the row-major weight's: the
    /// same bits from `TILE_MIN_ROWS` rows on, within float rounding of float64 below; narrow
    /// last strips, widths that are not a multiple of 16, and products big enough for threads.
    #[test]
    fn strip_products_equal_the_row_major_weights() -> Result<()> {
        let dev = Device::Cpu;
        for &(out, inp) in &[
            (576, 576),
            (192, 576),
            (1536, 576),
            (576, 1536),
            (61, 100),
            (7, 3),
        ] {
            let w = Tensor::randn(0f32, 1.0, (out, inp), &dev)?;
            let st = Strips::of(&w)?.ok_or_else(|| candle_core::Error::Msg("no strips".into()))?;
            assert_eq!(st.dims(), (out, inp));
            assert_eq!(bits(&st.tensor()?)?, bits(&w)?, "[{out}, {inp}] round trip");
            for m in [1, 5, 16, 37, 102] {
                let x = Tensor::randn(0f32, 1.0, (m, inp), &dev)?;
                let dy = Tensor::randn(0f32, 1.0, (m, out), &dev)?;
                let none = || candle_core::Error::Msg("none".into());
                let fwd = st.forward(&x)?.ok_or_else(none)?;
                let bwd = st.input_grad(&dy)?.ok_or_else(none)?;
                assert_eq!((fwd.dims(), bwd.dims()), (&[m, out][..], &[m, inp][..]));
                let (ef, eb) = (rel(&fwd, &x, &w.t()?)?, rel(&bwd, &dy, &w)?);
                assert!(
                    ef < 1e-5 && eb < 1e-5,
                    "[{out}, {inp}], {m} rows: {ef} {eb}"
                );
                if m >= gemm::TILE_MIN_ROWS {
                    let plain_f = gemm::try_matmul(&x, &w.t()?)?.ok_or_else(none)?;
                    let plain_b = gemm::try_matmul(&dy, &w)?.ok_or_else(none)?;
                    assert_eq!(
                        bits(&fwd)?,
                        bits(&plain_f)?,
                        "x·wᵀ [{out}, {inp}], {m} rows"
                    );
                    assert_eq!(
                        bits(&bwd)?,
                        bits(&plain_b)?,
                        "dy·w [{out}, {inp}], {m} rows"
                    );
                }
            }
            // a transposed (strided) left operand is read where it lies, with many rows (the
            // panels) and few (the `gemm` crate, not the dot products, which need contiguous rows)
            for m in [20, 5] {
                let xt = Tensor::randn(0f32, 1.0, (inp, m), &dev)?.t()?;
                let got = st
                    .forward(&xt)?
                    .ok_or_else(|| candle_core::Error::Msg("none".into()))?;
                assert!(rel(&got, &xt, &w.t()?)? < 1e-5, "[{out}, {inp}], {m} rows");
            }
        }
        // other dtypes and mismatched shapes are left to candle
        let w = Tensor::randn(0f32, 1.0, (8, 4), &dev)?;
        assert!(Strips::of(&w.to_dtype(DType::F64)?)?.is_none());
        let st = Strips::of(&w)?.ok_or_else(|| candle_core::Error::Msg("no strips".into()))?;
        assert!(st
            .forward(&Tensor::zeros((3, 5), DType::F32, &dev)?)?
            .is_none());
        assert!(st
            .input_grad(&Tensor::zeros((3, 8), DType::F64, &dev)?)?
            .is_none());
        Ok(())
    }
}
