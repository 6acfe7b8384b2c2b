//! gim's own worker threads for the CPU kernels (`gemm.rs`, `kernels.rs`, `row_kernels.rs`).
//!
//! Why not rayon: between two parallel operations of a forward pass (one every ~100 µs) rayon's
//! workers go to sleep, and waking one is a futex call that, on a virtual machine, becomes an
//! inter-processor interrupt and a host reschedule. On SmolLM2-135M (2 vCPUs) one attribution
//! with 2 rayon threads took longer than with 1, and a profile showed a third of the samples in
//! wake-ups and yields; candle's own elementwise pool spinning beside rayon's made three busy
//! threads on two cores. Here the workers spin (like OpenMP's `KMP_BLOCKTIME`) for
//! [`SPIN`] after their last job before they park, so a forward pass never waits for a wake-up;
//! and `gemm::take_over_threads` makes rayon and candle single-threaded in the `gim` binary, so these
//! are the only threads that compute.
//!
//! The pool has `threads() - 1` workers; the calling thread takes part in every job. A job is a
//! number of items claimed one at a time from a shared counter. A call made while another call
//! is running (another thread, or from inside a job) runs its items inline. A panic in an item is
//! re-raised in the caller after every worker has left the job.

use std::any::Any;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks (`GIM_SPIN_MS` overrides).
const SPIN: Duration = Duration::from_millis(50);

/// How long an idle worker spins before it also yields its core between checks.
const YIELD_AFTER: Duration = Duration::from_micros(200);

/// Threads that compute: `GIM_THREADS`, else `RAYON_NUM_THREADS`, else every core.
pub fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        let var = |v: &str| {
            std::env::var(v)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
        };
        var("GIM_THREADS")
            .or_else(|| var("RAYON_NUM_THREADS"))
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
            .clamp(1, 256)
    })
}

/// A job's items, type-erased; valid while the caller of [`for_each`] waits.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// bumped once per job
    gen: AtomicUsize,
    job: Mutex<Option<(JobPtr, usize)>>,
    next: AtomicUsize,
    /// workers that have not finished the current job
    active: AtomicUsize,
    sleeping: Vec<AtomicBool>,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    spin: Duration,
}

#[derive(Clone, Copy)]
struct JobPtr(Job);
// SAFETY: the pointee is `Sync`, and `for_each` keeps it alive until every worker has finished.
unsafe impl Send for JobPtr {}

struct Pool {
    shared: Arc<Shared>,
    workers: Vec<Thread>,
    busy: Mutex<()>,
}

thread_local! {
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = threads().saturating_sub(1);
        let spin = std::env::var("GIM_SPIN_MS")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(SPIN);
        let shared = Arc::new(Shared {
            gen: AtomicUsize::new(0),
            job: Mutex::new(None),
            next: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            sleeping: (0..n).map(|_| AtomicBool::new(false)).collect(),
            panic: Mutex::new(None),
            spin,
        });
        let mut workers = Vec::new();
        for i in 0..n {
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("gim-worker-{i}"))
                .spawn(move || worker(&s, i));
            match spawned {
                Ok(h) => workers.push(h.thread().clone()),
                // fewer threads: jobs wait only for the workers that started (`active`)
                Err(_) => break,
            }
        }
        Pool {
            shared,
            workers,
            busy: Mutex::new(()),
        }
    })
}

fn worker(s: &Shared, me: usize) {
    IN_JOB.with(|f| f.set(true));
    let mut seen = 0usize;
    loop {
        let mut spins = 0u32;
        let mut idle_since: Option<Instant> = None;
        loop {
            let g = s.gen.load(Ordering::SeqCst);
            if g != seen {
                seen = g;
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                let t = *idle_since.get_or_insert_with(Instant::now);
                let idle = t.elapsed();
                if idle >= YIELD_AFTER {
                    // let a third thread have this core (or the vCPU's host time) while idle
                    std::thread::yield_now();
                }
                if idle >= s.spin {
                    s.sleeping[me].store(true, Ordering::SeqCst);
                    if s.gen.load(Ordering::SeqCst) == seen {
                        std::thread::park();
                    }
                    s.sleeping[me].store(false, Ordering::SeqCst);
                    idle_since = None;
                }
            }
            std::hint::spin_loop();
        }
        let job = s.job.lock().map(|j| *j).unwrap_or(None);
        if let Some((JobPtr(f), n)) = job {
            run_items(s, f, n);
        }
        s.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Claims and runs items until none are left; a panic is kept for the caller.
fn run_items(s: &Shared, f: Job, n: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            return;
        }
        // SAFETY: `for_each` keeps the closure alive until `active` is 0.
        let f = unsafe { &*f };
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))) {
            if let Ok(mut slot) = s.panic.lock() {
                slot.get_or_insert(p);
            }
            // no one else should start more of a failed job
            s.next.store(n, Ordering::Relaxed);
        }
    }
}

/// Runs `f(0)`, …, `f(n - 1)` on the pool's threads and the caller's; returns when all are done.
pub fn for_each(n: usize, f: impl Fn(usize) + Sync) {
    let p = pool();
    let inline = || (0..n).for_each(&f);
    if n <= 1 || p.workers.is_empty() || IN_JOB.with(|c| c.get()) {
        return inline();
    }
    let Ok(_busy) = p.busy.try_lock() else {
        return inline();
    };
    let s = &p.shared;
    let dynf: &(dyn Fn(usize) + Sync) = &f;
    // SAFETY: only the lifetime is erased; this function does not return before every worker
    // has finished the job (`active` reaches 0), so the closure outlives every use.
    let ptr: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(dynf) };
    if let Ok(mut j) = s.job.lock() {
        *j = Some((JobPtr(ptr), n));
    } else {
        return inline();
    }
    s.next.store(0, Ordering::SeqCst);
    s.active.store(p.workers.len(), Ordering::SeqCst);
    s.gen.fetch_add(1, Ordering::SeqCst);
    for (w, asleep) in p.workers.iter().zip(&s.sleeping) {
        if asleep.load(Ordering::SeqCst) {
            w.unpark();
        }
    }
    IN_JOB.with(|c| c.set(true));
    run_items(s, ptr, n);
    IN_JOB.with(|c| c.set(false));
    let mut spins = 0u32;
    while s.active.load(Ordering::SeqCst) != 0 {
        spins = spins.wrapping_add(1);
        if spins >= 4096 {
            // the worker is late (preempted): give it this core if it waits here
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    if let Ok(mut j) = s.job.lock() {
        *j = None;
    }
    let panicked = s.panic.lock().ok().and_then(|mut p| p.take());
    if let Some(p) = panicked {
        std::panic::resume_unwind(p);
    }
}

/// `O` outputs of `n` floats, filled chunk by chunk (`chunk` floats each, the last one shorter) by
/// `fill(chunk index, its slice of each output)` on gim's worker threads. Each task zeroes its own
/// slices just before filling them, in cache, instead of one serial zeroing of whole outputs on the
/// caller's thread (which left the other core idle).
pub(crate) fn par_chunks<const O: usize>(
    n: usize,
    chunk: usize,
    fill: impl Fn(usize, [&mut [f32]; O]) + Sync,
) -> [Vec<f32>; O] {
    let chunk = chunk.max(1);
    let mut outs: [Vec<f32>; O] = std::array::from_fn(|_| Vec::with_capacity(n));
    let ptrs: [ChunkPtr; O] = std::array::from_fn(|k| ChunkPtr(outs[k].as_mut_ptr()));
    for_each(n.div_ceil(chunk), |c| {
        let lo = c * chunk;
        let len = chunk.min(n - lo);
        // SAFETY: every output has capacity n and chunk c is its own lo..lo+len (lo + len ≤ n),
        // touched by this task only; it is zeroed before a slice of it is made.
        let parts: [&mut [f32]; O] = std::array::from_fn(|k| unsafe {
            let p = ptrs[k].0.add(lo);
            std::ptr::write_bytes(p, 0, len);
            std::slice::from_raw_parts_mut(p, len)
        });
        fill(c, parts);
    });
    for o in &mut outs {
        // SAFETY: the chunks 0..n.div_ceil(chunk) cover 0..n and each was written above (a
        // panic in `fill` reaches the caller before this point, leaving the vectors empty)
        unsafe { o.set_len(n) };
    }
    outs
}

/// An output's storage, shared by the tasks of [`par_chunks`], each writing its own chunk.
#[derive(Clone, Copy)]
struct ChunkPtr(*mut f32);
// SAFETY: the tasks write disjoint chunks.
unsafe impl Send for ChunkPtr {}
unsafe impl Sync for ChunkPtr {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_and_panics_reach_the_caller() {
        let hits: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..50 {
            for_each(hits.len(), |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 50));
        // nested calls run inline
        let total = AtomicUsize::new(0);
        for_each(8, |_| {
            for_each(8, |_| {
                total.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 64);
        let r = std::panic::catch_unwind(|| {
            for_each(100, |i| {
                if i == 37 {
                    panic!("item 37");
                }
            })
        });
        assert!(r.is_err());
        // the pool still works afterwards
        let n = AtomicUsize::new(0);
        for_each(10, |_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn par_chunks_fills_every_chunk_once_from_zero() {
        // a last chunk shorter than the others, two outputs, one chunk, none
        for &(n, chunk) in &[(1000, 64), (1000, 1000), (999, 10), (0, 8)] {
            let [a, b] = par_chunks(n, chunk, |c, [a, b]: [&mut [f32]; 2]| {
                for (j, (x, y)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
                    // each slice arrives zeroed
                    assert_eq!((*x, *y), (0.0, 0.0));
                    *x = (c * chunk + j) as f32;
                    *y = c as f32;
                }
            });
            assert_eq!(
                a,
                (0..n).map(|i| i as f32).collect::<Vec<_>>(),
                "{n}/{chunk}"
            );
            assert_eq!(b, (0..n).map(|i| (i / chunk) as f32).collect::<Vec<_>>());
        }
        // a panic in one chunk reaches the caller
        let r = std::panic::catch_unwind(|| {
            par_chunks(100, 10, |c, [_]: [&mut [f32]; 1]| {
                assert!(c != 7, "chunk 7")
            })
        });
        assert!(r.is_err());
    }
}
