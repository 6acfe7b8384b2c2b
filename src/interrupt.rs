//! A process-wide interrupt flag: front ends set it (Jupyter `interrupt_request`, SIGINT, Ctrl-C
//! in the REPL); long loops check it between steps and stop with [`GimError::Interrupted`].

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{GimError, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Ask running work to stop at its next check.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Clear the flag (at the start of each cell / command).
pub fn clear() {
    REQUESTED.store(false, Ordering::SeqCst);
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once an interrupt was requested.
pub fn check() -> Result<()> {
    if requested() {
        Err(GimError::Interrupted)
    } else {
        Ok(())
    }
}
