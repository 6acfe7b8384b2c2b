//! gim: GIM attributions and circuit hunting on Hugging Face causal language models.
//!
//! See ARCHITECTURE.md for the code map.

pub mod args;
pub mod attribution;
pub mod bench;
pub mod chat;
pub mod circuit;
pub mod cli;
pub mod error;
pub mod eval;
pub mod generate;
pub mod interrupt;
pub mod kernel;
pub mod loader;
pub mod model;
pub mod render;
pub mod rng;
pub mod session;
pub mod tasks;
pub mod text;
pub mod tokenizer;
pub mod toy;
pub mod train;

pub use error::{GimError, Result};
pub use loader::{load, LoadOpts, LoadedModel};

/// The candle version gim is built against (provenance in `%gim info`).
pub const CANDLE_VERSION: &str = "0.11.1";

/// Let candle's element-wise worker thread sleep soon after its work instead of spinning.
///
/// candle's CPU binary ops run on a pool whose workers spin 25 000 times before parking, so after
/// every element-wise op a worker keeps a core busy for about half a millisecond, taking it from
/// the matrix products that follow. On 2 cores that spinning was 13% of all CPU time of an
/// attribution (perf); a limit of 1000 spins took GIM on the GPT-2-small shape at 128 tokens from
/// about 700 to 590 ms. Called once at the start of the `gim` binary, before any candle op; a
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` in the environment wins.
pub fn tune_threads() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        // No other thread exists yet: nothing can read the environment concurrently.
        std::env::set_var(VAR, "1000");
    }
}

/// Keep freed tensor memory in the process instead of handing it back to the system at once.
///
/// glibc serves large blocks (a few MB: one activation of a 1B model) with fresh `mmap`s, and trims
/// the heap top as soon as enough of it is free, so every new tensor of that size page-faults its
/// memory in again: on the GPT-2-small shape at 128 tokens that was about a third of an
/// attribution, and zeroing fresh pages was 18% of integrated gradients, whose batches free and
/// re-allocate more than a gigabyte each. Blocks under 512 MB now come from the heap, and the heap
/// is never trimmed on its own: a command's peak stays reserved while it runs, and
/// [`release_memory`] hands the free part back between commands (the kernel calls it after every
/// cell). Called once at the start of the `gim` binary; a `MALLOC_MMAP_THRESHOLD_` or
/// `MALLOC_TRIM_THRESHOLD_` in the environment wins.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |var: &str, param: libc::c_int, value: libc::c_int| {
            if std::env::var_os(var).is_none() {
                // SAFETY: mallopt only adjusts allocator parameters; it is called before any
                // other thread exists.
                unsafe { libc::mallopt(param, value) };
            }
        };
        set("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 512 << 20);
        // -1: never trim on free (mallopt(3))
        set("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, -1);
    }
}

/// Hand the allocator's free memory back to the system (glibc `malloc_trim`); a no-op elsewhere.
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
