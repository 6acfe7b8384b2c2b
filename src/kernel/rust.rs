//! Rust cells, evaluated by evcxr with state kept between cells.
//!
//! evcxr compiles each cell into a dylib and loads it into a child process (this same binary,
//! re-executed; `main` calls `evcxr::runtime_hook()` first). Interrupting a running cell kills
//! that child: evcxr restarts it and the cell's variables are lost, which the error says.

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use serde_json::Value;

use crate::session::{MimeBundle, Output};

/// Call first thing in `main`: if this process is evcxr's code runner or rustc wrapper, act
/// as that and never return.
///
/// The runner ignores SIGINT: Jupyter signals the kernel's whole process group, and the
/// runner (which holds the Rust cells' variables) must survive an interrupt sent while no
/// Rust cell runs. A running cell is stopped by the kernel killing the runner instead.
pub fn runtime_hook() {
    if std::env::var_os("EVCXR_IS_RUNTIME").is_some() {
        // Registering a flag handler replaces the default "terminate" action.
        let _ = signal_hook::flag::register(
            signal_hook::consts::SIGINT,
            Arc::new(AtomicBool::new(false)),
        );
    }
    evcxr::runtime_hook();
}

/// `ename` of the error after evcxr itself panicked; the engine must then be replaced.
pub const EVALUATOR_DIED: &str = "EvaluatorCrashed";

/// A failed cell, in Jupyter's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

impl CellError {
    /// A cell error whose traceback is `ename: evalue` plus `detail` lines.
    pub fn new(ename: &str, evalue: &str, detail: Vec<String>) -> CellError {
        let evalue = evalue.lines().next().unwrap_or("").to_string();
        let mut traceback = vec![format!("{ename}: {evalue}")];
        traceback.extend(detail);
        CellError {
            ename: ename.into(),
            evalue,
            traceback,
        }
    }

    /// The error reported when the user interrupted a cell.
    pub fn interrupted(detail: &str) -> CellError {
        CellError::new("KeyboardInterrupt", detail, vec![])
    }
}

/// The handle the serve loop needs to stop a running Rust cell from another thread.
#[derive(Clone, Default)]
pub struct RustInterrupt {
    child: Arc<Mutex<Option<Arc<Mutex<Child>>>>>,
    running: Arc<AtomicBool>,
}

impl RustInterrupt {
    /// Kill the evcxr child if a Rust cell is running; true if something was killed.
    pub fn interrupt(&self) -> bool {
        if !self.running.load(Ordering::SeqCst) {
            return false;
        }
        let Ok(slot) = self.child.lock() else {
            return false;
        };
        let Some(handle) = slot.as_ref() else {
            return false;
        };
        let Ok(mut child) = handle.lock() else {
            return false;
        };
        child.kill().is_ok()
    }

    /// Kill the child unconditionally (shutdown).
    pub fn kill(&self) {
        if let Ok(slot) = self.child.lock() {
            if let Some(Ok(mut child)) = slot.as_ref().map(|h| h.lock()) {
                let _ = child.kill();
            }
        }
    }
}

/// An evcxr evaluation context plus its output channels.
pub struct RustEngine {
    ctx: evcxr::CommandContext,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    interrupt: RustInterrupt,
}

impl RustEngine {
    /// Start evcxr (compiles a first trivial cell: several seconds).
    pub fn start(interrupt: RustInterrupt) -> Result<RustEngine, CellError> {
        let (ctx, outputs) = evcxr::CommandContext::new().map_err(|e| {
            CellError::new(
                "EvcxrError",
                "could not start the Rust evaluator",
                lines(&e.to_string()),
            )
        })?;
        if let Ok(mut slot) = interrupt.child.lock() {
            *slot = Some(ctx.process_handle());
        }
        Ok(RustEngine {
            ctx,
            stdout: outputs.stdout,
            stderr: outputs.stderr,
            interrupt,
        })
    }

    /// Evaluate one block of Rust; stdout/stderr stream to `out` while it runs.
    pub fn execute(
        &mut self,
        code: &str,
        out: &mut dyn Output,
    ) -> Result<Option<MimeBundle>, CellError> {
        self.interrupt.running.store(true, Ordering::SeqCst);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let ctx = &mut self.ctx;
        let (stdout, stderr) = (&self.stdout, &self.stderr);
        let mut panic = PanicWatch::default();
        let result = std::thread::scope(|scope| {
            let evaluator = scope.spawn(move || {
                let r = ctx.execute(code);
                let _ = done_tx.send(r);
            });
            let r = loop {
                crossbeam_channel::select! {
                    recv(stdout) -> line => if let Ok(l) = line { out.stream("stdout", &format!("{l}\n")) },
                    recv(stderr) -> line => if let Ok(l) = line {
                        panic.see(&l);
                        out.stream("stderr", &format!("{l}\n"))
                    },
                    recv(done_rx) -> r => break r,
                    default(Duration::from_millis(200)) => {}
                }
            };
            // Joining here turns a panic inside evcxr into `Err` instead of re-raising it.
            let _ = evaluator.join();
            r
        });
        self.interrupt.running.store(false, Ordering::SeqCst);
        // Everything the cell printed is queued before evcxr returns; flush it in order.
        self.drain(out, &mut panic);
        let interrupted = out.interrupted();
        match result {
            Err(_) => Err(CellError::new(
                EVALUATOR_DIED,
                "the Rust evaluator crashed; the next Rust cell starts a fresh one (Rust variables are lost)",
                vec![],
            )),
            // evcxr reports a panic as success (the backtrace went to stderr); Jupyter wants an error.
            Ok(Ok(_)) if panic.message.is_some() => Err(CellError::new(
                "Panic",
                panic.message.as_deref().unwrap_or("panicked"),
                vec![
                    "(backtrace in the cell's stderr above; variables defined by this cell were not kept)"
                        .into(),
                ],
            )),
            Ok(Ok(outputs)) => {
                if outputs.content_by_mime_type.is_empty() {
                    return Ok(None);
                }
                let mut b = MimeBundle::default();
                for (mime, data) in outputs.content_by_mime_type {
                    b.data.insert(mime, Value::String(data));
                }
                if !b.data.contains_key("text/plain") {
                    b.data
                        .insert("text/plain".into(), Value::String(String::new()));
                }
                Ok(Some(b))
            }
            Ok(Err(evcxr::Error::TypeRedefinedVariablesLost(vars))) => {
                // The cell ran; only earlier variables were dropped. Warn and carry on.
                let msg = format!(
                    "warning: a type was redefined, these variables were lost: {}\n",
                    vars.join(", ")
                );
                out.stream("stderr", &msg);
                Ok(None)
            }
            Ok(Err(e)) => Err(convert_error(e, interrupted)),
        }
    }

    /// Completions at byte `cursor` of `code`: (matches, start, end) in bytes.
    pub fn complete(&mut self, code: &str, cursor: usize) -> Option<(Vec<String>, usize, usize)> {
        let c = self.ctx.completions(code, cursor).ok()?;
        let matches = c.completions.into_iter().map(|c| c.code).collect();
        Some((matches, c.start_offset, c.end_offset))
    }

    fn drain(&self, out: &mut dyn Output, panic: &mut PanicWatch) {
        // stderr arrives through a reader thread; give it a moment to catch up.
        while let Ok(l) = self.stdout.try_recv() {
            out.stream("stdout", &format!("{l}\n"));
        }
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(50)) {
            panic.see(&l);
            out.stream("stderr", &format!("{l}\n"));
        }
    }
}

/// Spots a panic report in the runner's stderr: `thread '…' panicked at …` then the message.
#[derive(Default)]
struct PanicWatch {
    message: Option<String>,
    next_is_message: bool,
}

impl PanicWatch {
    fn see(&mut self, line: &str) {
        if self.next_is_message {
            self.message = Some(line.to_string());
            self.next_is_message = false;
        } else if self.message.is_none()
            && line.starts_with("thread '")
            && line.contains(" panicked at ")
        {
            self.message = Some(line.to_string());
            self.next_is_message = true;
        }
    }
}

fn convert_error(e: evcxr::Error, interrupted: bool) -> CellError {
    match e {
        evcxr::Error::SubprocessTerminated(_) if interrupted => CellError::interrupted(
            "interrupted; the Rust evaluator was restarted and variables defined in Rust cells were lost",
        ),
        evcxr::Error::SubprocessTerminated(msg) => CellError::new(
            "SubprocessTerminated",
            "the Rust evaluator process died and was restarted; Rust variables were lost",
            lines(&msg),
        ),
        evcxr::Error::CompilationErrors(errors) => {
            let first = errors.first().map(|e| e.message()).unwrap_or_else(|| "compilation failed".into());
            let mut detail = Vec::new();
            for err in &errors {
                detail.push(String::new());
                let code = err.code().map(|c| format!("[{c}]")).unwrap_or_default();
                detail.push(format!("{}{code}: {}", err.level(), err.message()));
                for sm in err.spanned_messages() {
                    if let Some(span) = &sm.span {
                        let label = if sm.label.is_empty() { String::new() } else { format!(": {}", sm.label) };
                        detail.push(format!("  --> line {}, column {}{label}", span.start_line, span.start_column));
                    }
                    for l in &sm.lines {
                        detail.push(format!("   | {l}"));
                    }
                }
                for h in err.help() {
                    detail.push(format!("  = help: {h}"));
                }
            }
            CellError::new("CompilationError", &first, detail)
        }
        evcxr::Error::TypeRedefinedVariablesLost(vars) => {
            CellError::new("VariablesLost", &format!("variables lost: {}", vars.join(", ")), vec![])
        }
        evcxr::Error::Message(m) => {
            let first = m.lines().next().unwrap_or("").to_string();
            CellError::new("Error", &first, lines(&m))
        }
    }
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}
