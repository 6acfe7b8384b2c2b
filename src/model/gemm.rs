//! Matrix products of f32 CPU tensors (linear layers, attention), split over gim's worker
//! threads (`pool.rs`).
//!
//! A linear layer's forward is `x · Wᵀ` and its input gradient `dy · W`, with `W` stored
//! `[out, in]`. candle runs each product through the `gemm` crate with rayon threads; between two
//! such products (one every ~100 µs in a forward pass) rayon's workers fall asleep, and on a
//! virtual machine each wake-up costs more than the product's share it brings (see `pool.rs`).
//! Here each thread of the pool takes tasks of one product, each task a block of the output's
//! columns (a block of `W`'s rows for `x · Wᵀ`, of its columns for `dy · W`), written in place
//! into one output:
//! - with at least [`TILE_MIN_ROWS`] rows of `a` (a prompt's tokens), a task is one panel of 64
//!   columns of `b`: `W`'s rows transposed into it (`transpose.rs`), or `b`'s rows copied, and
//!   gim's register-tiled kernel (`tile.rs`) reads it where it lies. Each element is then one
//!   chain of fused multiply-adds over `k`, the same bits in any row block, batch, thread and
//!   instruction set (tested). On SmolLM2 this replaced a transposed strip that the `gemm` crate
//!   then packed a second time (a fifth of a GIM attribution's samples went to the two copies).
//!   Where the panels do not share evenly among the threads, the last ones are split into one
//!   narrower block per thread ([`Columns`]): SmolLM2's 576 columns are 9 panels, and on 2
//!   threads one thread did a whole panel more than the other while the other waited (GIM
//!   ~5% faster, median of 20 in-process alternations).
//! - fewer rows (a generated token's matrix-vector products) run the `gemm` crate's kernel
//!   single-threaded on each task's columns, its operands read through strides: candle's own sums
//!   (tested: candle's bits).
//!
//! Other dtypes and devices, tracked tensors and other shapes return `None`: the caller uses
//! candle's matmul.

use candle_core::{CpuStorage, Device, Result, Storage, Tensor};
use gemm::Parallelism;

use super::kernels::fast_path;
use super::tile;

/// Whether these products run: unless `GIM_GEMM=candle` (which leaves every product, and all
/// threading, to candle and rayon).
pub(crate) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("GIM_GEMM")
            .map(|v| v != "candle")
            .unwrap_or(true)
    })
}

/// Makes gim's workers (`pool.rs`) the only threads that compute, where these products cover the
/// linear layers (`enabled`): keeps the thread count asked for (`RAYON_NUM_THREADS`, else
/// every core) as `GIM_THREADS`, then sets `RAYON_NUM_THREADS=1` and `CANDLE_NUM_THREADS=1`, so
/// that rayon's pool, candle's element-wise pool and candle's matmul stay on the calling thread.
/// Called once at the start of the `gim` binary, before any other thread exists; a `GIM_THREADS`
/// already set wins, and `GIM_GEMM=candle` leaves everything to candle and rayon.
pub fn take_over_threads() {
    if !enabled() || std::env::var_os("GIM_THREADS").is_some() {
        return;
    }
    let n = super::pool::threads();
    // SAFETY (set_var): no other thread exists yet, so nothing reads the environment meanwhile.
    std::env::set_var("GIM_THREADS", n.to_string());
    std::env::set_var("RAYON_NUM_THREADS", "1");
    std::env::set_var("CANDLE_NUM_THREADS", "1");
}

/// How many rows ahead a panel's row copy (`dy · W`) asks for `b`'s rows: 2–4% faster GIM on
/// SmolLM2 in four in-process alternations (12 ABBA quads each: medians 0.962, 0.978, 0.967 at
/// 8 and 16 rows, 0.986 at 4; each within its quartiles, all below 1).
const AHEAD: usize = 8;

/// Below this many multiply-adds a product runs on one thread.
const PAR_MIN: usize = 1 << 18;

/// Products with at least this many rows of `a` run through gim's panels (`tile.rs`): below,
/// copying `b` into panels costs more than the product saves (a generated token's matrix-vector
/// products), and they stay with the `gemm` crate.
pub(super) const TILE_MIN_ROWS: usize = 16;

thread_local! {
    /// Each worker's panel of `b` (`tile.rs`), reused.
    static PANEL_BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `a · b`: [`try_matmul`], else candle's matmul (autograd, other dtypes and devices).
pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match try_matmul(a, b)? {
        Some(y) => Ok(y),
        None => a.matmul(b),
    }
}

/// `a · b` over the last two dimensions, for f32 CPU tensors autograd does not track, of equal
/// rank 2–4 and equal leading (batch) dimensions, in any strides whose batch dimensions fold into
/// one (transposed views need no copy). `None` elsewhere: the caller uses candle's matmul.
pub(crate) fn try_matmul(a: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
    let r = a.rank();
    if !enabled() || !fast_path(a) || !fast_path(b) || !(2..=4).contains(&r) || b.rank() != r {
        return Ok(None);
    }
    let (ad, bd) = (a.dims(), b.dims());
    if ad[..r - 2] != bd[..r - 2] || ad[r - 1] != bd[r - 2] {
        return Ok(None);
    }
    let (m, k, n) = (ad[r - 2], ad[r - 1], bd[r - 1]);
    let batch: usize = ad[..r - 2].iter().product();
    if m == 0 || n == 0 || k == 0 || batch == 0 {
        return Ok(None);
    }
    let (Some(opa), Some(opb)) = (operand(a, batch, m, k), operand(b, batch, k, n)) else {
        return Ok(None);
    };
    let (pa, sa, pb, sb) = (opa.ptr, opa.s, opb.ptr, opb.s);
    // gemm writes every element (read_dst = false): no need to zero them first
    let len = batch * m * n;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let o = OutPtr(out.as_mut_ptr());
    let threads = threads_for(batch * m * n * k);
    if m >= TILE_MIN_ROWS && (sb.col == 1 || sb.row == 1) {
        // gim's kernel, one task per panel of `b`'s columns (see `tile.rs`)
        let fill = |i: usize, c: usize, w: usize, p: *mut f32, wp: usize| {
            // SAFETY: rows 0..k, columns c..c+w of item i of `b` lie inside its storage
            // (`end` above), read along its rows (`sb.col == 1`) or, transposed, along its
            // columns (`sb.row == 1`); `p` has room for k rows wp apart (`tiled`).
            unsafe {
                let b = pb.get().add(i * sb.batch + c * sb.col);
                if sb.col == 1 && w == tile::PANEL {
                    // a whole panel's rows: a copy of constant length, inlined
                    for kk in 0..k {
                        // `b`'s row AHEAD rows on, asked for into the second-level cache:
                        // the rows lie 2–6 KiB apart, past what the hardware prefetches
                        #[cfg(target_arch = "x86_64")]
                        if kk + AHEAD < k {
                            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
                            let next = b.add((kk + AHEAD) * sb.row) as *const i8;
                            for line in 0..4 {
                                _mm_prefetch::<_MM_HINT_T1>(next.add(64 * line));
                            }
                        }
                        let row = b.add(kk * sb.row) as *const [f32; tile::PANEL];
                        *(p.add(kk * wp) as *mut [f32; tile::PANEL]) = *row;
                    }
                } else if sb.col == 1 {
                    for kk in 0..k {
                        std::ptr::copy_nonoverlapping(b.add(kk * sb.row), p.add(kk * wp), w);
                    }
                } else {
                    super::transpose::transpose(b, sb.col, w, k, p, wp);
                }
            }
            None
        };
        // SAFETY: `a`'s items lie inside its storage (`end` above); `out` has room for
        // batch·m·n values; `fill` writes each panel from inside `b`'s storage.
        unsafe { tiled((batch, m, k, n), pa, sa, o, threads, &fill) };
    } else {
        // the `gemm` crate, single-threaded on each task's block of columns, so that there are
        // at least two tasks per thread
        let blocks = FewRows::new(n, threads, batch);
        each(threads, batch * blocks.parts, &|task: usize| {
            let i = task / blocks.parts;
            let Some((c0, c1)) = blocks.columns(task % blocks.parts) else {
                return;
            };
            let (o, pa, pb) = (o, pa, pb);
            // SAFETY: `operand` checked that every element gemm reads lies inside the
            // storages; `out` has `batch·m·n` elements and this task writes only its item's
            // columns c0..c1.
            unsafe {
                gemm_f32(
                    (m, c1 - c0, k),
                    (o.0.add(i * m * n + c0), n, false),
                    (pa.0.add(i * sa.batch), sa.col, sa.row),
                    (pb.0.add(i * sb.batch + c0 * sb.col), sb.col, sb.row),
                )
            }
        });
    }
    drop((opa, opb));
    // SAFETY: the tasks above wrote all `len` elements: every batch item's m rows × the column
    // ranges c0..c1, which tile 0..n.
    unsafe { out.set_len(len) };
    Ok(Some(Tensor::from_vec(
        out,
        [&ad[..r - 1], &[n]].concat(),
        &Device::Cpu,
    )?))
}

/// How many threads a product of `flops` multiply-adds runs on.
pub(super) fn threads_for(flops: usize) -> usize {
    if flops < PAR_MIN {
        1
    } else {
        super::pool::threads()
    }
}

/// Runs `run(t)` for `t < tasks`: on the calling thread, or over the pool's.
pub(super) fn each(threads: usize, tasks: usize, run: &(dyn Fn(usize) + Sync)) {
    if threads <= 1 {
        (0..tasks).for_each(run);
    } else {
        super::pool::for_each(tasks, run);
    }
}

/// Writes a panel: `fill(i, c, w, p, wp)` puts columns `c..c+w` of item `i` of the right
/// operand (all `k` rows) at `p`, rows `wp` apart (`wp = tile::padded(w)`; the padding columns
/// are zeroed by [`tiled`]) and returns `None`; or, where those columns already lie as a panel
/// (`k · wp` values, `w = wp`: a strip of `strips.rs`), writes nothing and returns where.
pub(super) type Fill<'a> =
    &'a (dyn Fn(usize, usize, usize, *mut f32, usize) -> Option<*const f32> + Sync);

/// `out = a · b` for `batch` items of `m × k` times `k × n` (items of `out` `m·n` apart) with gim's
/// kernel (`tile.rs`): one task per block of columns ([`Columns`]), whose panel `fill` writes into
/// the worker's buffer.
///
/// # Safety
/// `a` must be readable at every `i·sa.batch + r·sa.row + kk·sa.col` (`i < batch`, `r < m`,
/// `kk < k`), `out` writable at `batch·m·n` values that nothing else reads or writes meanwhile,
/// and `fill` must write exactly the `k × w` values it is asked for.
pub(super) unsafe fn tiled(
    (batch, m, k, n): (usize, usize, usize, usize),
    pa: Ptr,
    sa: Strided,
    o: OutPtr,
    threads: usize,
    fill: Fill,
) {
    let cols = Columns::new(n, if batch == 1 { threads } else { 1 });
    let per_item = cols.tasks();
    each(threads, batch * per_item, &|task: usize| {
        let (i, (c, w)) = (task / per_item, cols.task(task % per_item));
        if w == 0 {
            return;
        }
        let (o, pa) = (o, pa);
        let wp = tile::padded(w);
        PANEL_BUF.with_borrow_mut(|buf| {
            buf.clear();
            buf.reserve(k * wp);
            // SAFETY: `buf` has room for the panel's k·wp values, each written (by `fill`, the
            // padding with zeros here) before `set_len`, unless `fill` names a panel that lies
            // ready (k·wp values, `Fill`); `a`'s item i and the output's columns c..c+w of item i
            // are this task's alone to write (the caller's bounds).
            unsafe {
                let panel: &[f32] = match fill(i, c, w, buf.as_mut_ptr(), wp) {
                    Some(ready) => std::slice::from_raw_parts(ready, k * wp),
                    None => {
                        let p = buf.as_mut_ptr();
                        if wp > w {
                            for kk in 0..k {
                                std::ptr::write_bytes(p.add(kk * wp + w), 0, wp - w);
                            }
                        }
                        buf.set_len(k * wp);
                        buf
                    }
                };
                tile::product(
                    m,
                    w,
                    k,
                    pa.0.add(i * sa.batch),
                    sa.row,
                    sa.col,
                    panel,
                    o.0.add(i * m * n + c),
                    n,
                );
            }
        });
    });
}

/// The few-row path's tasks (the `gemm` crate): one item's `n` columns in `parts` blocks of whole
/// 16-column groups, at least two tasks per thread over all items.
pub(super) struct FewRows {
    n: usize,
    groups: usize,
    pub(super) parts: usize,
}

impl FewRows {
    pub(super) fn new(n: usize, threads: usize, batch: usize) -> FewRows {
        let groups = n.div_ceil(16);
        let parts = (2 * threads).div_ceil(batch.max(1)).clamp(1, groups.max(1));
        FewRows { n, groups, parts }
    }

    /// Block t's columns `c0..c1`; `None` where it has none.
    pub(super) fn columns(&self, t: usize) -> Option<(usize, usize)> {
        let at = |j: usize| (self.groups * j / self.parts * 16).min(self.n);
        Some((at(t), at(t + 1))).filter(|(c0, c1)| c0 < c1)
    }
}

/// The column blocks of one item's product, one task each: whole panels of [`tile::PANEL`]
/// columns first, as many as share evenly among the threads, then the rest of the columns in
/// one narrower block per thread (multiples of 16 columns). The tasks are claimed in order, so
/// the narrow ones come last and even out the threads' shares: on SmolLM2 most products have 9
/// or 3 panels, and with 2 threads one thread did a whole panel more while the other waited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Columns {
    n: usize,
    /// whole panels before the narrow blocks
    full: usize,
    /// narrow blocks after them (0, or the thread count)
    narrow: usize,
}

impl Columns {
    fn new(n: usize, threads: usize) -> Columns {
        let threads = threads.max(1);
        let full = n / tile::PANEL / threads * threads;
        let narrow = if n > full * tile::PANEL { threads } else { 0 };
        Columns { n, full, narrow }
    }

    fn tasks(&self) -> usize {
        self.full + self.narrow
    }

    /// Task t's first column and width (0: nothing left for it).
    fn task(&self, t: usize) -> (usize, usize) {
        if t < self.full {
            return (t * tile::PANEL, tile::PANEL);
        }
        let start = self.full * tile::PANEL;
        let blocks = (self.n - start).div_ceil(16);
        let at = |j: usize| (start + blocks * j / self.narrow * 16).min(self.n);
        let j = t - self.full;
        (at(j), at(j + 1) - at(j))
    }
}

/// A tensor's strides: between batch items (its batch dimensions folded into one), rows and
/// columns of its last two dimensions.
#[derive(Clone, Copy)]
pub(super) struct Strided {
    pub(super) batch: usize,
    pub(super) row: usize,
    pub(super) col: usize,
}

impl Strided {
    fn of(t: &Tensor) -> Option<Strided> {
        let st = t.stride();
        let d = t.dims();
        let r = d.len();
        // fold the batch dimensions: each must step by the next one's whole extent
        let mut batch = 0usize;
        let mut expect: Option<usize> = None;
        for i in (0..r - 2).rev() {
            if d[i] == 1 {
                continue;
            }
            match expect {
                Some(e) if st[i] != e => return None,
                _ => {}
            }
            if batch == 0 {
                batch = st[i];
            }
            expect = Some(st[i] * d[i]);
        }
        Some(Strided {
            batch,
            row: st[r - 2],
            col: st[r - 1],
        })
    }

    /// One past the last element read of a `batch × rows × cols` operand starting at `offset`.
    fn end(&self, offset: usize, batch: usize, rows: usize, cols: usize) -> usize {
        offset + (batch - 1) * self.batch + (rows - 1) * self.row + (cols - 1) * self.col + 1
    }
}

/// An f32 CPU operand of a product, held while the product reads it: its storage's read guard, its
/// first element and its strides, checked so that every element of a `batch × rows × cols`
/// operand lies inside the storage.
pub(super) struct Operand<G> {
    _guard: G,
    pub(super) ptr: Ptr,
    pub(super) s: Strided,
}

/// `t` as an [`Operand`]; `None` where its batch dimensions do not fold ([`Strided::of`]), its
/// storage is not f32 on the CPU, or such an operand would reach past it.
pub(super) fn operand(
    t: &Tensor,
    batch: usize,
    rows: usize,
    cols: usize,
) -> Option<Operand<impl Sized + '_>> {
    let s = Strided::of(t)?;
    let (guard, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(v)) = &*guard else {
        return None;
    };
    let start = layout.start_offset();
    if s.end(start, batch, rows, cols) > v.len() {
        return None;
    }
    let ptr = Ptr(v[start..].as_ptr());
    Some(Operand {
        _guard: guard,
        ptr,
        s,
    })
}

/// The `gemm` crate, single-threaded: `dst (+)= lhs · rhs` (`m × n × k`), `dst` rows `ld` apart
/// (adding to it where `add`), `lhs` and `rhs` given as (pointer, column stride, row stride).
///
/// # Safety
/// Every element those strides name must lie inside its buffer, `dst`'s writable.
pub(super) unsafe fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    (dst, ld, add): (*mut f32, usize, bool),
    (lhs, lcs, lrs): (*const f32, usize, usize),
    (rhs, rcs, rrs): (*const f32, usize, usize),
) {
    // SAFETY: the caller's
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ld as isize,
            add,
            lhs,
            lcs as isize,
            lrs as isize,
            rhs,
            rcs as isize,
            rrs as isize,
            if add { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// The output, shared by the tasks, each of which writes only its own columns.
#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub(super) *mut f32);
// SAFETY: the tasks write disjoint parts of the output.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// An operand, read by every task.
#[derive(Clone, Copy)]
pub(super) struct Ptr(pub(super) *const f32);

impl Ptr {
    /// The pointer (a closure calling this captures the whole `Ptr`, which is `Sync`).
    pub(super) fn get(self) -> *const f32 {
        self.0
    }
}
// SAFETY: only read while the storage guards are held (`Operand`).
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use candle_core::DType;

    /// Largest error of `got` relative to the largest entry of the float64 product `a · b`.
    pub(crate) fn rel_err(got: &Tensor, a: &Tensor, b: &Tensor) -> Result<f64> {
        let want = a.to_dtype(DType::F64)?.matmul(&b.to_dtype(DType::F64)?)?;
        assert_eq!(got.dims(), want.dims());
        let scale = want.abs()?.max_all()?.to_scalar::<f64>()?.max(1e-30);
        let err = (got.to_dtype(DType::F64)? - want)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        Ok(err / scale)
    }

    /// An f32 tensor's values as bits.
    pub(crate) fn bits(t: &Tensor) -> Result<Vec<u32>> {
        Ok(t.flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .map(|v| v.to_bits())
            .collect())
    }

    /// [`rel_err`] of [`try_matmul`]'s product.
    fn check(a: &Tensor, b: &Tensor) -> Result<f64> {
        let got = try_matmul(a, b)?
            .ok_or_else(|| candle_core::Error::Msg(format!("no fast path for {a:?}")))?;
        rel_err(&got, a, b)
    }

    #[test]
    fn column_tasks_tile_the_columns_and_share_them_evenly() {
        for n in 1..700 {
            for threads in 1..5 {
                let cols = Columns::new(n, threads);
                let mut next = 0;
                let mut widths = Vec::new();
                for t in 0..cols.tasks() {
                    let (c, w) = cols.task(t);
                    if w == 0 {
                        continue;
                    }
                    assert_eq!(c, next, "n {n}, {threads} threads, task {t}");
                    assert!(w <= tile::PANEL && (w % 16 == 0 || c + w == n));
                    next = c + w;
                    widths.push(w);
                }
                assert_eq!(next, n, "n {n}, {threads} threads");
                // handed out in turn (each to the thread with least so far), the threads' shares
                // differ by less than two 16-column blocks
                let mut share = vec![0usize; threads];
                for w in widths {
                    let t = (0..threads).min_by_key(|&t| share[t]).unwrap_or(0);
                    share[t] += w;
                }
                let (lo, hi) = (share.iter().min(), share.iter().max());
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    assert!(hi - lo < 32, "n {n}, {threads} threads: shares {share:?}");
                }
            }
        }
        // SmolLM2's 576 columns on 2 threads: 8 panels, then two blocks of 32
        let c = Columns::new(576, 2);
        assert_eq!(
            (c.tasks(), c.task(8), c.task(9)),
            (10, (512, 32), (544, 32))
        );
    }

    #[test]
    fn products_match_float64_in_every_layout() -> Result<()> {
        let dev = Device::Cpu;
        let r = |d: &[usize]| Tensor::randn(0f32, 1.0, d, &dev);
        // plain, a linear's forward (transposed weight view) and input gradient, with
        // remainders of every block size, one row, and a product big enough to run in parallel
        for &(m, k, n) in &[
            (1, 576, 1536),
            (5, 17, 7),
            (37, 1000, 61),
            (102, 576, 1536),
            (3, 3, 1),
        ] {
            let (x, w, dy) = (r(&[m, k])?, r(&[n, k])?, r(&[m, n])?);
            for (what, e) in [
                ("x·wᵀ", check(&x, &w.t()?)?),
                ("dy·w", check(&dy, &w)?),
                ("plain", check(&x, &w.t()?.contiguous()?)?),
            ] {
                assert!(e < 1e-5, "{what} {m}×{k}×{n}: relative error {e}");
            }
            // below TILE_MIN_ROWS rows, candle's kernel and order of sums: candle's bits; from
            // there on, gim's panels: the bits of one chain of fused multiply-adds over k per
            // element (`tile.rs`), in every row, whatever the batch or thread
            for (what, a, b) in [("x·wᵀ", &x, w.t()?), ("dy·w", &dy, w.clone())] {
                let ours =
                    try_matmul(a, &b)?.ok_or_else(|| candle_core::Error::Msg("none".into()))?;
                let want = if m < TILE_MIN_ROWS {
                    bits(&a.matmul(&b)?)?
                } else {
                    let (av, bv) = (a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
                    let (kk, nn) = b.dims2()?;
                    (0..m * nn)
                        .map(|e| {
                            let (i, j) = (e / nn, e % nn);
                            (0..kk)
                                .fold(0f32, |s, t| av[i][t].mul_add(bv[t][j], s))
                                .to_bits()
                        })
                        .collect()
                };
                assert_eq!(bits(&ours)?, want, "{what} {m}×{k}×{n}: other bits");
                // the last rows alone (other row blocks) give the bits they have among all rows
                if m > TILE_MIN_ROWS {
                    let at = m - TILE_MIN_ROWS;
                    let last = try_matmul(&a.narrow(0, at, TILE_MIN_ROWS)?, &b)?
                        .ok_or_else(|| candle_core::Error::Msg("none".into()))?;
                    assert_eq!(bits(&last)?, bits(&ours.narrow(0, at, TILE_MIN_ROWS)?)?);
                }
            }
        }
        // attention: [b, h, s, d] · [b, h, d, s] (a transposed view), pattern · v, and the
        // backward's transposed left operand; a batch of one folded
        let (q, kk) = (r(&[2, 9, 102, 64])?, r(&[2, 9, 102, 64])?);
        let p = r(&[2, 9, 102, 102])?;
        for (what, e) in [
            ("q·kᵀ", check(&q, &kk.t()?)?),
            ("p·v", check(&p, &kk)?),
            ("pᵀ·dz", check(&p.t()?, &q)?),
            ("3-d", check(&r(&[4, 30, 20])?, &r(&[4, 20, 50])?)?),
            (
                "batch 1",
                check(&r(&[1, 1, 30, 20])?, &r(&[1, 1, 20, 50])?)?,
            ),
        ] {
            assert!(e < 1e-5, "{what}: relative error {e}");
        }
        // a batch that does not fold (heads transposed in front of positions) is left to candle,
        // as are other dtypes and mismatched shapes
        let qt = r(&[2, 102, 9, 64])?.transpose(1, 2)?;
        let v = r(&[2, 9, 64, 102])?;
        assert!(try_matmul(&qt, &v)?.is_none());
        assert!(try_matmul(&q.to_dtype(DType::F64)?, &kk.t()?.to_dtype(DType::F64)?)?.is_none());
        assert!(try_matmul(&q, &kk)?.is_none());
        Ok(())
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use std::time::Instant;

    /// `cargo test --release --lib gemm::speed -- --ignored --nocapture`: GFLOP/s of both
    /// products and of candle's matmul on SmolLM2's shapes, best of 7 interleaved rounds (a
    /// measurement, not a check).
    #[test]
    #[ignore]
    fn gflops() -> Result<()> {
        for &(m, k, n) in &[
            (102, 576, 576),
            (102, 576, 192),
            (102, 576, 1536),
            (102, 1536, 576),
        ] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
            let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
            let dy = Tensor::randn(0f32, 1.0, (m, n), &Device::Cpu)?;
            let fs: [&dyn Fn() -> Result<Tensor>; 4] = [
                &|| Ok(try_matmul(&x, &w.t()?)?.unwrap_or(x.clone())),
                &|| x.matmul(&w.t()?),
                &|| Ok(try_matmul(&dy, &w)?.unwrap_or(x.clone())),
                &|| dy.matmul(&w),
            ];
            let mut best = [f64::MAX; 4];
            for _ in 0..7 {
                for (f, b) in fs.iter().zip(best.iter_mut()) {
                    f()?;
                    let t = Instant::now();
                    for _ in 0..10 {
                        f()?;
                    }
                    *b = b.min(t.elapsed().as_secs_f64() / 10.0);
                }
            }
            let g = |t: f64| 2.0 * (m * n * k) as f64 / t / 1e9;
            println!(
                "{m}x{k}x{n}: x·wT {:.0} (candle {:.0})  dy·w {:.0} (candle {:.0}) GFLOP/s",
                g(best[0]),
                g(best[1]),
                g(best[2]),
                g(best[3])
            );
        }
        Ok(())
    }
}
