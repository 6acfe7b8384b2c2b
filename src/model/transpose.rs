//! Copying a block of a matrix into its transpose, for `gemm.rs`.
//!
//! A linear layer's forward `x · Wᵀ` reads `W` (stored `[out, in]`) along its rows, but the
//! product's kernel (`tile.rs`) wants that operand with the output dimension contiguous. So
//! `gemm.rs` transposes 64 rows of `W` at a time into a panel, in 8×8 register tiles; the values
//! are only moved, never changed (tested against the plain loop). And [`contiguous`]: the
//! attention's transposed tensors copied into their own layout, split over the threads.

use candle_core::{CpuStorage, Device, Storage, Tensor};

use crate::error::Result;

/// `x.contiguous()`, the copy split over gim's threads where the fast path applies (a 4-d f32 CPU
/// tensor autograd does not track, read along its last dimension): the attention's transposes
/// between `[b, s, heads, d]` and `[b, heads, s, d]`, which candle copies on one thread.
pub(crate) fn contiguous(x: &Tensor) -> Result<Tensor> {
    match parallel_copy(x)? {
        Some(y) => Ok(y),
        None => Ok(x.contiguous()?),
    }
}

/// [`contiguous`]'s fast path; `None` where it does not apply.
fn parallel_copy(x: &Tensor) -> Result<Option<Tensor>> {
    let st = x.stride();
    if x.is_contiguous() || !super::kernels::fast_path(x) || x.rank() != 4 || st[3] != 1 {
        return Ok(None);
    }
    let (d0, d1, d2, d3) = x.dims4()?;
    if x.elem_count() == 0 {
        return Ok(None);
    }
    let (guard, layout) = x.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(v)) = &*guard else {
        return Ok(None);
    };
    let off = layout.start_offset();
    // one past the last element read
    if off + (d0 - 1) * st[0] + (d1 - 1) * st[1] + (d2 - 1) * st[2] + d3 > v.len() {
        return Ok(None);
    }
    let per = (super::kernels::CHUNK / d3).max(1);
    let [out] = super::pool::par_chunks(d0 * d1 * d2 * d3, per * d3, |c, [o]| {
        for (j, row) in o.chunks_exact_mut(d3).enumerate() {
            let r = c * per + j;
            let (i0, i1, i2) = (r / (d1 * d2), r / d2 % d1, r % d2);
            let at = off + i0 * st[0] + i1 * st[1] + i2 * st[2];
            row.copy_from_slice(&v[at..at + d3]);
        }
    });
    drop(guard);
    Ok(Some(Tensor::from_vec(out, (d0, d1, d2, d3), &Device::Cpu)?))
}

/// `dst[c·ld + r] = src[r·stride + c]` for `r < rows`, `c < cols`: the `rows × cols` block at
/// `src` (rows `stride` apart, each contiguous) written transposed, `cols × rows`, at `dst`, whose
/// rows are `ld ≥ rows` apart (what lies between is left alone).
///
/// # Safety
/// `src` must be readable at every `r·stride + c` and `dst` writable at every `c·ld + r`, and the
/// two must not overlap.
pub(super) unsafe fn transpose(
    src: *const f32,
    stride: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    ld: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx") {
            // SAFETY: the caller's bounds; AVX is present
            unsafe { transpose_avx(src, stride, rows, cols, dst, ld) };
            return;
        }
    }
    // SAFETY: the caller's bounds
    unsafe { transpose_tiles(src, stride, ld, dst, 0..rows, 0..cols) }
}

/// The plain loop over rows `rs` and columns `cs` of the block (`dst`'s rows `ld` apart), in 8×8
/// tiles so that both sides stay in cache: the whole block, or the
/// AVX version's remainders.
///
/// # Safety
/// As [`transpose`], for `rs.end ≤ rows` and `cs` inside the block's columns.
unsafe fn transpose_tiles(
    src: *const f32,
    stride: usize,
    ld: usize,
    dst: *mut f32,
    rs: std::ops::Range<usize>,
    cs: std::ops::Range<usize>,
) {
    for rb in rs.clone().step_by(8) {
        for cb in cs.clone().step_by(8) {
            for r in rb..(rb + 8).min(rs.end) {
                for c in cb..(cb + 8).min(cs.end) {
                    // SAFETY: r < rows, c < cols (the caller's bounds)
                    unsafe { *dst.add(c * ld + r) = *src.add(r * stride + c) };
                }
            }
        }
    }
}

/// [`transpose`] with 8×8 tiles transposed in AVX registers (unpack, shuffle, lane permute).
///
/// # Safety
/// As [`transpose`], and the CPU must have AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_avx(
    src: *const f32,
    stride: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    ld: usize,
) {
    use std::arch::x86_64::*;
    let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
    for rb in (0..r8).step_by(8) {
        for cb in (0..c8).step_by(8) {
            // SAFETY: rows rb..rb+8 and columns cb..cb+8 lie inside the block (r8 ≤ rows, c8 ≤
            // cols); the stores go to dst[(cb+i)·ld + rb .. +8] (the caller's bounds)
            unsafe {
                let p = src.add(rb * stride + cb);
                let l = |i: usize| _mm256_loadu_ps(p.add(i * stride));
                let (a0, a1, a2, a3) = (l(0), l(1), l(2), l(3));
                let (a4, a5, a6, a7) = (l(4), l(5), l(6), l(7));
                let (t0, t1) = (_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
                let (t2, t3) = (_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
                let (t4, t5) = (_mm256_unpacklo_ps(a4, a5), _mm256_unpackhi_ps(a4, a5));
                let (t6, t7) = (_mm256_unpacklo_ps(a6, a7), _mm256_unpackhi_ps(a6, a7));
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let q = dst.add(cb * ld + rb);
                let s = |i: usize, v: __m256| _mm256_storeu_ps(q.add(i * ld), v);
                s(0, _mm256_permute2f128_ps::<0x20>(u0, u4));
                s(1, _mm256_permute2f128_ps::<0x20>(u1, u5));
                s(2, _mm256_permute2f128_ps::<0x20>(u2, u6));
                s(3, _mm256_permute2f128_ps::<0x20>(u3, u7));
                s(4, _mm256_permute2f128_ps::<0x31>(u0, u4));
                s(5, _mm256_permute2f128_ps::<0x31>(u1, u5));
                s(6, _mm256_permute2f128_ps::<0x31>(u2, u6));
                s(7, _mm256_permute2f128_ps::<0x31>(u3, u7));
            }
        }
    }
    // the remainders: the last columns of the full row tiles, then the last rows
    // SAFETY: the caller's bounds
    unsafe {
        transpose_tiles(src, stride, ld, dst, 0..r8, c8..cols);
        transpose_tiles(src, stride, ld, dst, r8..rows, 0..cols);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_copies_equal_candles() -> Result<()> {
        let x = Tensor::randn(0f32, 1.0, (2, 37, 9, 64), &Device::Cpu)?;
        let views = [
            x.transpose(1, 2)?,
            x.narrow(1, 3, 30)?.transpose(1, 2)?,
            x.narrow(3, 5, 40)?,
            x.transpose(0, 2)?,
            x.clone(),
            // the last dimension strided: left to candle
            x.transpose(2, 3)?,
        ];
        // the fast path runs where it should (and not where the last dimension is strided)
        let fast: Vec<bool> = views
            .iter()
            .map(|v| parallel_copy(v).map(|y| y.is_some()))
            .collect::<Result<_>>()?;
        assert_eq!(fast, [true, true, true, true, false, false]);
        for v in &views {
            let (ours, theirs) = (contiguous(v)?, v.contiguous()?);
            assert!(ours.is_contiguous());
            assert_eq!(ours.dims(), theirs.dims());
            let bits = |t: &Tensor| -> Result<Vec<u32>> {
                Ok(t.flatten_all()?
                    .to_vec1::<f32>()?
                    .iter()
                    .map(|f| f.to_bits())
                    .collect())
            };
            assert_eq!(
                bits(&ours)?,
                bits(&theirs)?,
                "{:?} {:?}",
                v.dims(),
                v.stride()
            );
        }
        Ok(())
    }

    #[test]
    fn every_shape_and_stride_equals_the_plain_loop() {
        for &(rows, cols, extra) in &[(1, 1, 0), (8, 8, 0), (9, 17, 3), (64, 576, 5), (13, 7, 1)] {
            let stride = cols + extra;
            let src: Vec<f32> = (0..rows * stride).map(|i| i as f32 * 0.5 - 3.0).collect();
            let ld = rows + extra;
            let mut got = vec![f32::NAN; ld * cols];
            // SAFETY: src holds rows·stride values, got ld·cols
            unsafe { transpose(src.as_ptr(), stride, rows, cols, got.as_mut_ptr(), ld) };
            // the gaps between dst's rows are left alone
            assert!((0..cols).all(|c| got[c * ld + rows..(c + 1) * ld].iter().all(|v| v.is_nan())));
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        got[c * ld + r].to_bits(),
                        src[r * stride + c].to_bits(),
                        "{rows}×{cols} at ({r}, {c})"
                    );
                }
            }
        }
    }
}
