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

/// Make the first Ctrl-C (SIGINT) of a command-line run [`request`] an interrupt, so long loops
/// stop at their next check and keep what they finished; a second Ctrl-C ends the process.
pub fn on_ctrl_c() {
    #[cfg(unix)]
    {
        extern "C" fn handler(_: libc::c_int) {
            REQUESTED.store(true, Ordering::SeqCst);
            // SAFETY: signal() is async-signal-safe; restoring the default makes a second Ctrl-C fatal.
            unsafe {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
            }
        }
        // SAFETY: the handler only stores an atomic and resets the disposition.
        unsafe {
            libc::signal(
                libc::SIGINT,
                handler as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}
