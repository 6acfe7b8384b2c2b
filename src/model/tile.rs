//! gim's own register-tiled f32 kernel for the products of `gemm.rs` with enough rows.
//!
//! `c[i, j] = Σ_k a[i, k] · p[k, j]` for a *panel* `p`: at most [`PANEL`] columns of the right
//! operand, copied by the caller into one contiguous `k × width` block whose width is padded with
//! zeros to a whole number of 16-float vectors. A linear layer's `Wᵀ` becomes a panel by
//! transposing 64 rows of `W` (`transpose.rs`), and a row-major right operand by copying its rows;
//! the kernel then reads the panel as it lies, so that no second packing (the `gemm` crate's)
//! follows the transposition, and `a` is read where it lies, in any strides.
//!
//! **The order of the sums is fixed**: every `c[i, j]` is one chain of fused multiply-adds over
//! `k = 0, 1, …` starting from `+0.0`, whatever the instruction set (AVX-512, AVX2 with FMA, or
//! the scalar fallback's `f32::mul_add`), the number of rows, the row block or the thread that
//! computes it. So a row's values do not depend on the batch it came in, nor the machine on its
//! vector width (tested: every kernel gives the same bits as the plain chain).

/// Columns of one panel: four 16-float vectors.
pub(super) const PANEL: usize = 64;

/// Rows of `a` per register tile (6 rows × 4 vectors = 24 of AVX-512's 32 registers).
const ROWS: usize = 6;

/// The instruction sets the kernel has a version for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    Avx512,
    Avx2,
    Scalar,
}

impl Isa {
    /// The best this CPU has (checked once).
    pub(super) fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f") {
                    return Isa::Avx512;
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    return Isa::Avx2;
                }
            }
            Isa::Scalar
        })
    }

    /// Whether this CPU can run it.
    #[cfg(test)]
    pub(super) fn available(self) -> bool {
        match (self, Isa::best()) {
            (Isa::Scalar, _) | (_, Isa::Avx512) => true,
            (Isa::Avx2, b) => b == Isa::Avx2,
            (Isa::Avx512, _) => false,
        }
    }
}

/// The padded width of a panel of `w` columns (a whole number of 16-float vectors).
pub(super) fn padded(w: usize) -> usize {
    w.div_ceil(16) * 16
}

/// `c[i·ldc + j] = Σ_k a[i·ars + k·acs] · panel[k·padded(w) + j]` for `i < m`, `j < w`, the
/// sums in the fixed order of the module's doc, with the best kernel of this CPU.
///
/// # Safety
/// `a` must be readable at every `i·ars + k·acs` (`i < m`, `k < k`), `panel` must hold
/// `k · padded(w)` values whose padding columns are zero, `c` must be writable at every
/// `i·ldc + j`, and `c` must not overlap `a` or `panel`; `1 ≤ w ≤ PANEL`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn product(
    m: usize,
    w: usize,
    k: usize,
    a: *const f32,
    ars: usize,
    acs: usize,
    panel: &[f32],
    c: *mut f32,
    ldc: usize,
) {
    // SAFETY: the caller's
    unsafe { product_with(Isa::best(), m, w, k, a, ars, acs, panel, c, ldc) }
}

/// [`product`] with the kernel for `isa` (which this CPU must have).
///
/// # Safety
/// As [`product`], and the CPU must have `isa`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn product_with(
    isa: Isa,
    m: usize,
    w: usize,
    k: usize,
    a: *const f32,
    ars: usize,
    acs: usize,
    panel: &[f32],
    c: *mut f32,
    ldc: usize,
) {
    let wp = padded(w);
    debug_assert!((1..=PANEL).contains(&w) && panel.len() >= k * wp);
    // a whole panel is stored straight into `c`; a narrower one into a tile, then copied
    let mut tile = [0f32; ROWS * PANEL];
    for i0 in (0..m).step_by(ROWS) {
        let rows = ROWS.min(m - i0);
        let (out, ldo) = if w == wp {
            // SAFETY: row i0 of `c` (the caller's bounds)
            (unsafe { c.add(i0 * ldc) }, ldc)
        } else {
            (tile.as_mut_ptr(), PANEL)
        };
        // SAFETY: rows i0..i0+rows of `a` (the caller's bounds); the panel's k·wp values;
        // `out` writable at r·ldo + j for r < rows, j < wp (c's rows hold w = wp columns here)
        let a0 = unsafe { a.add(i0 * ars) };
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above; the CPU has AVX-512 (the caller's)
            Isa::Avx512 => unsafe { avx512::tile(rows, wp / 16, k, a0, ars, acs, panel, out, ldo) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above; the CPU has AVX2 and FMA (the caller's)
            Isa::Avx2 => unsafe { avx2::tile(rows, wp / 16, k, a0, ars, acs, panel, out, ldo) },
            // SAFETY: as above
            _ => unsafe { scalar_tile(rows, wp, k, a0, ars, acs, panel, out, ldo) },
        }
        if w != wp {
            for (r, row) in tile.chunks_exact(PANEL).enumerate().take(rows) {
                // SAFETY: c is writable at (i0 + r)·ldc + j for j < w (the caller's)
                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), c.add((i0 + r) * ldc), w) };
            }
        }
    }
}

/// The plain chain of fused multiply-adds, one output at a time.
///
/// # Safety
/// `a` readable at `r·ars + k·acs` for `r < rows`, `k < k`; `panel` holds `k · wp` values;
/// `out` writable at `r·ldo + j` for `r < rows`, `j < wp`.
#[allow(clippy::too_many_arguments)]
unsafe fn scalar_tile(
    rows: usize,
    wp: usize,
    k: usize,
    a: *const f32,
    ars: usize,
    acs: usize,
    panel: &[f32],
    out: *mut f32,
    ldo: usize,
) {
    for r in 0..rows {
        let mut acc = [0f32; PANEL];
        for kk in 0..k {
            // SAFETY: the caller's bounds
            let x = unsafe { *a.add(r * ars + kk * acs) };
            for (o, &p) in acc[..wp].iter_mut().zip(&panel[kk * wp..(kk + 1) * wp]) {
                *o = x.mul_add(p, *o);
            }
        }
        // SAFETY: the caller's bounds
        unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), out.add(r * ldo), wp) };
    }
}

/// Expands `$body` for every (rows, vectors) pair the kernels take, with `R` and `V` constant.
macro_rules! dispatch {
    ($rows:expr, $v:expr, $f:ident, $($arg:expr),*) => {
        match ($rows, $v) {
            (1, 1) => $f::<1, 1>($($arg),*), (1, 2) => $f::<1, 2>($($arg),*),
            (1, 3) => $f::<1, 3>($($arg),*), (1, _) => $f::<1, 4>($($arg),*),
            (2, 1) => $f::<2, 1>($($arg),*), (2, 2) => $f::<2, 2>($($arg),*),
            (2, 3) => $f::<2, 3>($($arg),*), (2, _) => $f::<2, 4>($($arg),*),
            (3, 1) => $f::<3, 1>($($arg),*), (3, 2) => $f::<3, 2>($($arg),*),
            (3, 3) => $f::<3, 3>($($arg),*), (3, _) => $f::<3, 4>($($arg),*),
            (4, 1) => $f::<4, 1>($($arg),*), (4, 2) => $f::<4, 2>($($arg),*),
            (4, 3) => $f::<4, 3>($($arg),*), (4, _) => $f::<4, 4>($($arg),*),
            (5, 1) => $f::<5, 1>($($arg),*), (5, 2) => $f::<5, 2>($($arg),*),
            (5, 3) => $f::<5, 3>($($arg),*), (5, _) => $f::<5, 4>($($arg),*),
            (_, 1) => $f::<6, 1>($($arg),*), (_, 2) => $f::<6, 2>($($arg),*),
            (_, 3) => $f::<6, 3>($($arg),*), (_, _) => $f::<6, 4>($($arg),*),
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// `rows` (1–6) rows × `v` (1–4) vectors of 16 columns.
    ///
    /// # Safety
    /// As `scalar_tile`'s, with `wp = 16·v`; the CPU has AVX-512F.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile(
        rows: usize,
        v: usize,
        k: usize,
        a: *const f32,
        ars: usize,
        acs: usize,
        panel: &[f32],
        out: *mut f32,
        ldo: usize,
    ) {
        // SAFETY: the caller's
        unsafe { dispatch!(rows, v, kernel, k, a, ars, acs, panel.as_ptr(), out, ldo) }
    }

    /// How many panel rows ahead the kernel asks for the panel into the first-level cache: the
    /// panel (k × 64 floats, 147 KiB at k = 576) lies in the second-level cache or memory, and the
    /// kernel's loads of it waited (perf: 39% of its samples on one load). 3–8% faster GIM on
    /// SmolLM2 (in-process alternations: 12 rows 0.956, 16 rows 0.924, 0.966, 0.962, 20 rows
    /// 0.939, 24 rows 0.933, 32 rows 0.972, 4 rows 0.960, 8 rows 0.952).
    const AHEAD: usize = 16;

    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const R: usize, const V: usize>(
        k: usize,
        a: *const f32,
        ars: usize,
        acs: usize,
        p: *const f32,
        out: *mut f32,
        ldo: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for kk in 0..k {
            // SAFETY: panel row kk has 16·V values; a's element (r, kk) (the caller's bounds)
            unsafe {
                let row = p.add(kk * 16 * V);
                // the panel's row AHEAD rows on, asked for into the first-level cache
                let ahead = p.wrapping_add((kk + AHEAD) * 16 * V) as *const i8;
                for j in 0..V {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * j));
                }
                let mut b = [_mm512_setzero_ps(); V];
                for (j, b) in b.iter_mut().enumerate() {
                    *b = _mm512_loadu_ps(row.add(16 * j));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*a.add(r * ars + kk * acs));
                    for (acc, b) in acc.iter_mut().zip(&b) {
                        *acc = _mm512_fmadd_ps(x, *b, *acc);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (j, acc) in acc.iter().enumerate() {
                // SAFETY: 16 floats at r·ldo + 16·j (the caller's bounds)
                unsafe { _mm512_storeu_ps(out.add(r * ldo + 16 * j), *acc) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `rows` (1–6) rows × `v` (1–4) vectors of 16 columns, each as two AVX registers (so that
    /// 6 rows × 16 columns fit the 16 registers), one 16-column group of the panel at a time.
    ///
    /// # Safety
    /// As `scalar_tile`'s, with `wp = 16·v`; the CPU has AVX2 and FMA.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile(
        rows: usize,
        v: usize,
        k: usize,
        a: *const f32,
        ars: usize,
        acs: usize,
        panel: &[f32],
        out: *mut f32,
        ldo: usize,
    ) {
        for g in 0..v.clamp(1, 4) {
            // SAFETY: the caller's; group g's columns 16·g.. lie inside the panel's rows
            unsafe {
                match rows {
                    1 => kernel::<1>(k, a, ars, acs, panel.as_ptr(), 16 * v, g, out, ldo),
                    2 => kernel::<2>(k, a, ars, acs, panel.as_ptr(), 16 * v, g, out, ldo),
                    3 => kernel::<3>(k, a, ars, acs, panel.as_ptr(), 16 * v, g, out, ldo),
                    4 => kernel::<4>(k, a, ars, acs, panel.as_ptr(), 16 * v, g, out, ldo),
                    5 => kernel::<5>(k, a, ars, acs, panel.as_ptr(), 16 * v, g, out, ldo),
                    _ => kernel::<6>(k, a, ars, acs, panel.as_ptr(), 16 * v, g, out, ldo),
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel<const R: usize>(
        k: usize,
        a: *const f32,
        ars: usize,
        acs: usize,
        p: *const f32,
        wp: usize,
        g: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for kk in 0..k {
            // SAFETY: panel row kk has wp ≥ 16·(g+1) values; a's element (r, kk)
            unsafe {
                let row = p.add(kk * wp + 16 * g);
                let b = [_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8))];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*a.add(r * ars + kk * acs));
                    acc[0] = _mm256_fmadd_ps(x, b[0], acc[0]);
                    acc[1] = _mm256_fmadd_ps(x, b[1], acc[1]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: 16 floats at r·ldo + 16·g (the caller's bounds)
            unsafe {
                _mm256_storeu_ps(out.add(r * ldo + 16 * g), acc[0]);
                _mm256_storeu_ps(out.add(r * ldo + 16 * g + 8), acc[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU has gives, in every shape with remainders and in strided `a`, the
    /// bits of the plain chain of fused multiply-adds over k from +0.0.
    #[test]
    fn every_kernel_gives_the_bits_of_the_plain_chain() {
        let isas = [Isa::Avx512, Isa::Avx2, Isa::Scalar];
        assert!(Isa::best().available() && Isa::Scalar.available());
        let mut checked = 0;
        for &(m, w, k, transposed) in &[
            (1, 1, 1, false),
            (6, 64, 576, false),
            (13, 17, 37, true),
            (102, 64, 64, false),
            (7, 48, 1536, true),
            (5, 33, 3, false),
        ] {
            let val = |i: usize| ((i * 7919 + 13) % 2003) as f32 / 1001.0 - 1.0;
            let a: Vec<f32> = (0..m * k).map(val).collect();
            // `a` row-major, or stored transposed (a column-major view)
            let (ars, acs) = if transposed { (1, m) } else { (k, 1) };
            let wp = padded(w);
            let mut panel = vec![0f32; k * wp];
            for kk in 0..k {
                for j in 0..w {
                    panel[kk * wp + j] = val(kk * 31 + j * 7 + 5) * 0.5;
                }
            }
            let want: Vec<u32> = (0..m * w)
                .map(|e| {
                    let (i, j) = (e / w, e % w);
                    (0..k)
                        .fold(0f32, |s, kk| {
                            a[i * ars + kk * acs].mul_add(panel[kk * wp + j], s)
                        })
                        .to_bits()
                })
                .collect();
            for isa in isas.into_iter().filter(|i| i.available()) {
                let ldc = w + 3;
                let mut c = vec![f32::NAN; m * ldc];
                // SAFETY: a holds m·k values, panel k·wp, c m·ldc
                unsafe {
                    product_with(
                        isa,
                        m,
                        w,
                        k,
                        a.as_ptr(),
                        ars,
                        acs,
                        &panel,
                        c.as_mut_ptr(),
                        ldc,
                    )
                };
                let got: Vec<u32> = (0..m * w)
                    .map(|e| c[e / w * ldc + e % w].to_bits())
                    .collect();
                assert_eq!(got, want, "{isa:?} {m}×{w}×{k}");
                // the columns past w are left alone
                assert!((0..m).all(|i| c[i * ldc + w..(i + 1) * ldc].iter().all(|v| v.is_nan())));
                checked += 1;
            }
        }
        assert!(checked >= 6);
    }
}
