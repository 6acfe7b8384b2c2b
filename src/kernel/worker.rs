//! The worker thread: owns the `Session` and evcxr, takes shell requests in arrival order,
//! runs cells (magics on their own thread, Rust through evcxr) and hands replies back to the
//! main thread. What each request type is answered with is in `requests.rs`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cells::{self, Piece};
use super::message::{Message, Signer};
use super::requests::HistoryEntry;
use super::rust::{CellError, RustEngine, RustInterrupt, EVALUATOR_DIED};
use crate::error::panic_message;
use crate::session::{MagicError, MimeBundle, Output, Session};

/// How long an interrupted magic may take to notice before the cell is failed without it.
const MAGIC_GRACE: Duration = Duration::from_millis(700);

/// A shell request handed to the worker.
pub(super) struct Job {
    pub(super) msg: Message,
}

/// State shared by the main thread and the worker.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) iopub: Sender<Message>,
    pub(super) interrupt: Arc<AtomicBool>,
    pub(super) rust: RustInterrupt,
}

impl Shared {
    pub(super) fn publish(&self, parent: &Message, msg_type: &str, content: Value) {
        // The iopub thread only stops at exit; a send error then is harmless.
        let _ = self.iopub.send(parent.iopub(msg_type, content));
    }

    pub(super) fn status(&self, parent: &Message, state: &str) {
        self.publish(parent, "status", json!({ "execution_state": state }));
    }
}

/// Sends a running cell's output to iopub.
struct KernelOutput<'a> {
    shared: &'a Shared,
    parent: &'a Message,
}

impl Output for KernelOutput<'_> {
    fn stream(&mut self, name: &str, text: &str) {
        let name = if name == "stderr" { "stderr" } else { "stdout" };
        self.shared
            .publish(self.parent, "stream", json!({ "name": name, "text": text }));
    }
    fn display(&mut self, bundle: MimeBundle, display_id: Option<&str>) {
        let mut content = bundle_content(bundle);
        if let Some(id) = display_id {
            content["transient"] = json!({ "display_id": id });
        }
        self.shared.publish(self.parent, "display_data", content);
    }
    fn update_display(&mut self, bundle: MimeBundle, display_id: &str) {
        let mut content = bundle_content(bundle);
        content["transient"] = json!({ "display_id": display_id });
        self.shared
            .publish(self.parent, "update_display_data", content);
    }
    fn interrupted(&self) -> bool {
        self.shared.interrupt.load(Ordering::SeqCst)
    }
}

fn bundle_content(b: MimeBundle) -> Value {
    json!({ "data": Value::Object(b.data), "metadata": Value::Object(b.metadata) })
}

/// The worker's end of the reply pipe to the main thread.
pub(super) struct Replies {
    pub(super) socket: zmq::Socket,
    pub(super) signer: Signer,
}

/// Owns the session and evcxr; handles shell requests in order.
pub(super) struct Worker {
    pub(super) shared: Shared,
    replies: Replies,
    /// Shared with the thread that runs the current magic (see `run_magic`).
    session: Arc<Mutex<Session>>,
    rust: Option<RustEngine>,
    /// The engine being started in the background (taken on first use).
    rust_starting: Option<Receiver<Result<RustEngine, CellError>>>,
    pub(super) execution_count: u64,
    /// Every stored execution, for `history_request`.
    pub(super) history: Vec<HistoryEntry>,
    jobs: Receiver<Job>,
    /// Requests drained from the queue while aborting, to handle after.
    pending: VecDeque<Job>,
    /// Executions queued behind a failed one, answered `aborted`.
    aborted: Vec<Job>,
}

impl Worker {
    pub(super) fn new(
        shared: Shared,
        replies: Replies,
        jobs: Receiver<Job>,
        engine: Receiver<Result<RustEngine, CellError>>,
    ) -> Worker {
        Worker {
            jobs,
            aborted: Vec::new(),
            shared,
            replies,
            session: Arc::new(Mutex::new(Session::new())),
            rust: None,
            rust_starting: Some(engine),
            execution_count: 0,
            history: Vec::new(),
            pending: VecDeque::new(),
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let job = match self.pending.pop_front() {
                Some(j) => j,
                None => match self.jobs.recv() {
                    Ok(j) => j,
                    Err(_) => return,
                },
            };
            let msg = job.msg;
            self.shared.status(&msg, "busy");
            // No request may take the kernel down: a panic in any handler becomes an error
            // reply, and the session (models, settings, results) stays as it was.
            let handled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(&msg)));
            if let Err(panic) = handled {
                self.reply_after_panic(&msg, &panic_message(&*panic));
            }
            self.shared.status(&msg, "idle");
            for job in std::mem::take(&mut self.aborted) {
                self.shared.status(&job.msg, "busy");
                self.reply(
                    &job.msg,
                    "execute_reply",
                    json!({ "status": "aborted", "execution_count": Value::Null }),
                );
                self.shared.status(&job.msg, "idle");
            }
        }
    }

    pub(super) fn reply(&self, parent: &Message, msg_type: &str, content: Value) {
        let msg = parent.child(msg_type, content);
        if let Err(e) = self
            .replies
            .socket
            .send_multipart(msg.to_frames(&self.replies.signer), 0)
        {
            eprintln!("gim kernel: cannot hand over {msg_type}: {e}");
        }
    }

    /// Set aside executions queued behind a failed one (answered `aborted` after it). Called
    /// before the error reply goes out, so everything queued was sent without seeing it.
    fn abort_queued(&mut self) {
        // Requests already on their way through the main thread get a moment to arrive.
        std::thread::sleep(Duration::from_millis(10));
        let queued: Vec<Job> = self.pending.drain(..).chain(self.jobs.try_iter()).collect();
        for job in queued {
            if job.msg.msg_type() == "execute_request" {
                self.aborted.push(job);
            } else {
                self.pending.push_back(job);
            }
        }
    }

    /// Run a cell.
    pub(super) fn execute(&mut self, msg: &Message) {
        let code = msg.content_str("code").to_string();
        let silent = msg.content_bool("silent", false);
        let store = msg.content_bool("store_history", !silent) && !silent;
        if store {
            self.execution_count += 1;
            self.history.push(HistoryEntry {
                count: self.execution_count,
                input: code.clone(),
                output: None,
            });
        }
        let count = self.execution_count;
        if !silent {
            self.shared.publish(
                msg,
                "execute_input",
                json!({ "code": code, "execution_count": count }),
            );
        }
        self.shared.interrupt.store(false, Ordering::SeqCst);
        let pieces = cells::split(&code);
        let n = pieces.len();
        let mut result: Result<(), CellError> = Ok(());
        for (i, piece) in pieces.into_iter().enumerate() {
            if self.shared.interrupt.load(Ordering::SeqCst) {
                result = Err(CellError::interrupted("interrupted"));
                break;
            }
            let shared = self.shared.clone();
            let mut out = KernelOutput {
                shared: &shared,
                parent: msg,
            };
            let is_rust = matches!(piece, Piece::Rust(_));
            let r = match piece {
                Piece::Magic(line) => self.run_magic(line, msg),
                Piece::Rust(src) => self.run_rust(&src, &mut out),
            };
            let r = match r {
                Ok(_) if out.interrupted() => Err(CellError::interrupted("interrupted")),
                other => other,
            };
            match r {
                Ok(Some(bundle)) if !silent => {
                    // evcxr's rich content (EVCXR_BEGIN_CONTENT) is display data; a magic's
                    // bundle, or a plain Rust value, ending the cell is its result.
                    let rich_rust = is_rust && bundle.data.keys().any(|k| k != "text/plain");
                    if i + 1 == n && !rich_rust {
                        if store {
                            if let Some(h) = self.history.last_mut() {
                                h.output = Some(bundle.plain().to_string());
                            }
                        }
                        let mut content = bundle_content(bundle);
                        content["execution_count"] = json!(count);
                        shared.publish(msg, "execute_result", content);
                    } else {
                        out.display(bundle, None);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        match result {
            Ok(()) => {
                self.reply(
                    msg,
                    "execute_reply",
                    json!({ "status": "ok", "execution_count": count, "user_expressions": {}, "payload": [] }),
                );
            }
            Err(e) => {
                let err = json!({ "ename": e.ename, "evalue": e.evalue, "traceback": e.traceback });
                if !silent {
                    self.shared.publish(msg, "error", err.clone());
                }
                let mut content = err;
                content["status"] = json!("error");
                content["execution_count"] = json!(count);
                content["user_expressions"] = json!({});
                if msg.content_bool("stop_on_error", true) {
                    self.abort_queued();
                }
                self.reply(msg, "execute_reply", content);
            }
        }
        // the allocator keeps freed memory during a command (see `tune_allocator`); between
        // cells it goes back to the system
        crate::release_memory();
    }

    pub(super) fn engine(&mut self) -> Result<&mut RustEngine, CellError> {
        if self.rust.is_none() {
            // Use the background start if there is one; if it failed (or is gone), try again here.
            let started = self.rust_starting.take().and_then(|rx| rx.recv().ok());
            self.rust = Some(match started {
                Some(Ok(engine)) => engine,
                _ => RustEngine::start(self.shared.rust.clone())?,
            });
        }
        self.rust
            .as_mut()
            .ok_or_else(|| CellError::new("EvcxrError", "no Rust evaluator", vec![]))
    }

    /// The session, unless a magic abandoned after an interrupt still holds it.
    pub(super) fn session_now(&self) -> Option<MutexGuard<'_, Session>> {
        match self.session.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Run one magic on its own thread. Magics stop early by polling `Output::interrupted()`;
    /// one that ignores an interrupt for `MAGIC_GRACE` is abandoned: the cell fails at once, the
    /// magic finishes in the background and the next magic waits for it. A panicking magic is
    /// an error, not a dead kernel.
    fn run_magic(
        &mut self,
        line: String,
        parent: &Message,
    ) -> Result<Option<MimeBundle>, CellError> {
        let (tx, rx) = mpsc::channel();
        let session = Arc::clone(&self.session);
        let shared = self.shared.clone();
        let parent = parent.clone();
        std::thread::Builder::new()
            .name("magic".into())
            .spawn(move || {
                let mut out = KernelOutput {
                    shared: &shared,
                    parent: &parent,
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut s = session
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    s.run_magic(&line, &mut out)
                }));
                let _ = tx.send(r);
            })
            .map_err(|e| {
                CellError::new(
                    "MagicError",
                    &format!("cannot start the magic: {e}"),
                    vec![],
                )
            })?;
        let mut deadline: Option<Instant> = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(Ok(r)) => {
                    return r.map_err(|e| {
                        if self.shared.interrupt.load(Ordering::SeqCst) {
                            CellError::interrupted(&e.message)
                        } else {
                            magic_error(e)
                        }
                    })
                }
                Ok(Err(panic)) => {
                    return Err(CellError::new(
                        "MagicPanic",
                        &panic_message(&*panic),
                        vec!["(the magic panicked; the session is kept)".into()],
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(CellError::new(
                        "MagicError",
                        "the magic's thread ended without a result",
                        vec![],
                    ))
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.shared.interrupt.load(Ordering::SeqCst) {
                        let d = *deadline.get_or_insert_with(|| Instant::now() + MAGIC_GRACE);
                        if Instant::now() >= d {
                            return Err(CellError::interrupted(
                                "interrupted; the magic did not stop and finishes in the background (the next magic waits for it)",
                            ));
                        }
                    }
                }
            }
        }
    }

    fn run_rust(
        &mut self,
        src: &str,
        out: &mut dyn Output,
    ) -> Result<Option<MimeBundle>, CellError> {
        let r = self.engine()?.execute(src, out);
        if matches!(&r, Err(e) if e.ename == EVALUATOR_DIED) {
            self.rust = None;
        }
        r
    }
}

fn magic_error(e: MagicError) -> CellError {
    let mut detail = Vec::new();
    if !e.usage.is_empty() {
        detail.push(String::new());
        detail.push(format!("usage: {}", e.usage));
    }
    CellError::new("MagicError", &e.message, detail)
}
