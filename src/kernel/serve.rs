//! The serve loop: which thread owns what, and how each request is answered.
//!
//! Threads: the **main** thread owns shell, control and stdin and answers control requests
//! itself (interrupt, shutdown, kernel_info), so they are served while a cell runs; the
//! **worker** owns the `Session` and evcxr and handles shell requests in arrival order; the
//! **iopub** thread owns the PUB socket and publishes what the others send it (one queue, so
//! order is kept); the **heartbeat** thread echoes pings. Interrupts (control message or
//! SIGINT) set one `AtomicBool` that `Output::interrupted()` reads, and kill a running
//! evcxr child.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cells::{self, CursorTarget, Piece};
use super::connection::{self, ConnectionInfo, Sockets};
use super::message::{Message, Signer, PROTOCOL_VERSION};
use super::rust::{CellError, RustEngine, RustInterrupt, EVALUATOR_DIED};
use crate::error::panic_message;
use crate::session::{MagicError, MimeBundle, Output, Session};

/// How long the main loop sleeps in `poll` before checking the SIGINT flag.
const POLL_MS: i64 = 100;
/// How long an interrupted magic may take to notice before the cell is failed without it.
const MAGIC_GRACE: Duration = Duration::from_millis(700);
/// The worker's shell replies reach the main thread (which owns the shell socket) here.
const REPLIES_ENDPOINT: &str = "inproc://gim-shell-replies";

/// A shell request handed to the worker.
struct Job {
    msg: Message,
}

/// State shared by the main thread and the worker.
#[derive(Clone)]
struct Shared {
    iopub: Sender<Message>,
    interrupt: Arc<AtomicBool>,
    rust: RustInterrupt,
}

impl Shared {
    fn publish(&self, parent: &Message, msg_type: &str, content: Value) {
        // The iopub thread only stops at exit; a send error then is harmless.
        let _ = self.iopub.send(parent.iopub(msg_type, content));
    }

    fn status(&self, parent: &Message, state: &str) {
        self.publish(parent, "status", json!({ "execution_state": state }));
    }
}

/// Run the kernel until a shutdown request.
pub fn run(info: &ConnectionInfo) -> anyhow::Result<()> {
    let signer = info.signer()?;
    let ctx = zmq::Context::new();
    let Sockets {
        shell,
        control,
        stdin,
        iopub,
        heartbeat,
    } = Sockets::bind(&ctx, info)?;
    let _stdin = stdin; // input_request is not supported; the socket stays bound for clients.

    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || connection::heartbeat_loop(heartbeat))?;
    let (iopub_tx, iopub_rx) = mpsc::channel::<Message>();
    let iopub_signer = signer.clone();
    let iopub_thread = std::thread::Builder::new()
        .name("iopub".into())
        .spawn(move || {
            for msg in iopub_rx {
                connection::send(&iopub, &iopub_signer, &msg);
            }
        })?;

    let shared = Shared {
        iopub: iopub_tx,
        interrupt: Arc::new(AtomicBool::new(false)),
        rust: RustInterrupt::default(),
    };
    let sigint = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&sigint))?;

    let (job_tx, job_rx) = mpsc::channel::<Job>();
    // A zmq pair, not a channel: the main loop's `poll` wakes the moment a reply is ready.
    let replies_in = ctx.socket(zmq::PULL)?;
    replies_in.set_linger(0)?;
    replies_in.bind(REPLIES_ENDPOINT)?;
    let replies_out = ctx.socket(zmq::PUSH)?;
    replies_out.set_linger(0)?;
    replies_out.connect(REPLIES_ENDPOINT)?;
    let replies = Replies {
        socket: replies_out,
        signer: signer.clone(),
    };
    // Start evcxr now, off the worker, so magics answer at once and the first Rust cell is quick.
    let (engine_tx, engine_rx) = mpsc::channel();
    let engine_interrupt = shared.rust.clone();
    std::thread::Builder::new()
        .name("evcxr-start".into())
        .spawn(move || {
            let _ = engine_tx.send(RustEngine::start(engine_interrupt));
        })?;
    let worker_shared = shared.clone();
    let worker = std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || Worker::new(worker_shared, replies, job_rx, engine_rx).run())?;

    // Clients wait for the kernel to say it is ready before sending requests.
    eprintln!(
        "gim kernel: listening on {}",
        info.endpoint(info.shell_port)
    );
    loop {
        let (shell_ready, control_ready, replies_ready) = {
            let mut items = [
                shell.as_poll_item(zmq::POLLIN),
                control.as_poll_item(zmq::POLLIN),
                replies_in.as_poll_item(zmq::POLLIN),
            ];
            match zmq::poll(&mut items, POLL_MS) {
                Ok(_) => (
                    items[0].is_readable(),
                    items[1].is_readable(),
                    items[2].is_readable(),
                ),
                Err(zmq::Error::EINTR) => (false, false, false),
                Err(e) => return Err(e.into()),
            }
        };
        if sigint.swap(false, Ordering::SeqCst) {
            interrupt(&shared);
        }
        if control_ready {
            if let Some(msg) = recv(&control, &signer, "control") {
                if guarded_control(&shared, &control, &signer, msg) {
                    break;
                }
            }
        }
        if shell_ready {
            if let Some(msg) = recv(&shell, &signer, "shell") {
                if msg.msg_type() == "shutdown_request" {
                    if guarded_control(&shared, &shell, &signer, msg) {
                        break;
                    }
                } else if job_tx.send(Job { msg }).is_err() {
                    anyhow::bail!("the worker thread died");
                }
            }
        }
        if replies_ready {
            // Already signed by the worker; frames are passed through untouched.
            while let Ok(frames) = replies_in.recv_multipart(zmq::DONTWAIT) {
                if let Err(e) = shell.send_multipart(frames, 0) {
                    eprintln!("gim kernel: failed to send a shell reply: {e}");
                }
            }
        }
    }
    // Stop a running Rust cell, then let the worker finish and drop evcxr (which removes its
    // temporary crate folder) and the iopub thread flush the last status messages.
    shared.rust.kill();
    drop(job_tx);
    drop(shared);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !(worker.is_finished() && iopub_thread.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn recv(socket: &zmq::Socket, signer: &Signer, channel: &str) -> Option<Message> {
    match connection::recv(socket, signer, channel) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("gim kernel: receive error on {channel}: {e}");
            None
        }
    }
}

fn interrupt(shared: &Shared) {
    shared.interrupt.store(true, Ordering::SeqCst);
    // long library loops (IG steps, patching sweeps, eval) poll this flag between steps
    crate::interrupt::request();
    shared.rust.interrupt();
}

/// [`handle_control`] under a panic guard: a panic is logged and the kernel keeps serving.
fn guarded_control(shared: &Shared, socket: &zmq::Socket, signer: &Signer, msg: Message) -> bool {
    let kind = msg.msg_type().to_string();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handle_control(shared, socket, signer, msg)
    }))
    .unwrap_or_else(|panic| {
        eprintln!(
            "gim kernel: internal error while handling {kind}: {}",
            panic_message(&*panic)
        );
        false
    })
}

/// Answer a control-channel request (or a shutdown on shell). Returns true to shut down.
fn handle_control(shared: &Shared, socket: &zmq::Socket, signer: &Signer, msg: Message) -> bool {
    shared.status(&msg, "busy");
    let mut stop = false;
    let reply = match msg.msg_type() {
        "kernel_info_request" => Some(msg.child("kernel_info_reply", kernel_info())),
        "interrupt_request" => {
            interrupt(shared);
            Some(msg.child("interrupt_reply", json!({ "status": "ok" })))
        }
        "shutdown_request" => {
            stop = true;
            let restart = msg.content_bool("restart", false);
            Some(msg.child(
                "shutdown_reply",
                json!({ "status": "ok", "restart": restart }),
            ))
        }
        other => {
            eprintln!("gim kernel: ignoring unknown control message `{other}`");
            None
        }
    };
    if let Some(r) = reply {
        connection::send(socket, signer, &r);
    }
    shared.status(&msg, "idle");
    stop
}

/// The reply to `kernel_info_request`.
pub fn kernel_info() -> Value {
    json!({
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "gim",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "language_info": {
            "name": "rust",
            "version": "",
            "mimetype": "text/rust",
            "file_extension": ".rs",
            "pygments_lexer": "rust",
            "codemirror_mode": "rust",
        },
        "banner": format!(
            "GIM {} — gradient attributions for language models.\n\
             `%gim help` lists the magics; other cells are Rust (evcxr).",
            env!("CARGO_PKG_VERSION")
        ),
        "help_links": [
            { "text": "Rust cells (evcxr)", "url": "https://github.com/evcxr/evcxr/blob/main/COMMON.md" },
        ],
        "debugger": false,
    })
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

/// One stored execution: its count, its code and the plain text of its result.
struct HistoryEntry {
    count: u64,
    input: String,
    output: Option<String>,
}

/// The worker's end of the reply pipe to the main thread.
struct Replies {
    socket: zmq::Socket,
    signer: Signer,
}

/// Owns the session and evcxr; handles shell requests in order.
struct Worker {
    shared: Shared,
    replies: Replies,
    /// Shared with the thread that runs the current magic (see `run_magic`).
    session: Arc<Mutex<Session>>,
    rust: Option<RustEngine>,
    /// The engine being started in the background (taken on first use).
    rust_starting: Option<Receiver<Result<RustEngine, CellError>>>,
    execution_count: u64,
    /// Every stored execution, for `history_request`.
    history: Vec<HistoryEntry>,
    jobs: Receiver<Job>,
    /// Requests drained from the queue while aborting, to handle after.
    pending: VecDeque<Job>,
    /// Executions queued behind a failed one, answered `aborted`.
    aborted: Vec<Job>,
}

impl Worker {
    fn new(
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

    fn run(mut self) {
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

    fn reply(&self, parent: &Message, msg_type: &str, content: Value) {
        let msg = parent.child(msg_type, content);
        if let Err(e) = self
            .replies
            .socket
            .send_multipart(msg.to_frames(&self.replies.signer), 0)
        {
            eprintln!("gim kernel: cannot hand over {msg_type}: {e}");
        }
    }

    /// The error reply for a request whose handler panicked.
    fn reply_after_panic(&self, msg: &Message, what: &str) {
        let evalue = format!(
            "internal error while handling {}: {what}; the kernel and its loaded models are kept",
            msg.msg_type()
        );
        eprintln!("gim kernel: {evalue}");
        let err = json!({ "status": "error", "ename": "InternalError", "evalue": evalue, "traceback": [evalue] });
        match msg.msg_type() {
            "execute_request" => {
                if !msg.content_bool("silent", false) {
                    self.shared.publish(
                        msg,
                        "error",
                        json!({ "ename": "InternalError", "evalue": evalue, "traceback": [evalue] }),
                    );
                }
                let mut c = err;
                c["execution_count"] = json!(self.execution_count);
                c["user_expressions"] = json!({});
                self.reply(msg, "execute_reply", c);
            }
            "complete_request" => {
                let mut c = err;
                c["matches"] = json!([]);
                c["cursor_start"] = msg.content.get("cursor_pos").cloned().unwrap_or(json!(0));
                c["cursor_end"] = c["cursor_start"].clone();
                c["metadata"] = json!({});
                self.reply(msg, "complete_reply", c);
            }
            "inspect_request" => {
                let mut c = err;
                c["found"] = json!(false);
                c["data"] = json!({});
                c["metadata"] = json!({});
                self.reply(msg, "inspect_reply", c);
            }
            "is_complete_request" => {
                self.reply(msg, "is_complete_reply", json!({ "status": "unknown" }))
            }
            "history_request" => {
                let mut c = err;
                c["history"] = json!([]);
                self.reply(msg, "history_reply", c);
            }
            "kernel_info_request" => self.reply(msg, "kernel_info_reply", kernel_info()),
            "comm_info_request" => self.reply(
                msg,
                "comm_info_reply",
                json!({ "status": "ok", "comms": {} }),
            ),
            _ => {}
        }
    }

    /// Handle one request.
    fn handle(&mut self, msg: &Message) {
        if fault_injection() && msg.content_str("code").contains(PANIC_PROBE) {
            panic!("fault injection in {}", msg.msg_type());
        }
        match msg.msg_type() {
            "execute_request" => self.execute(msg),
            "kernel_info_request" => self.reply(msg, "kernel_info_reply", kernel_info()),
            "complete_request" => {
                let c = self.complete(msg);
                self.reply(msg, "complete_reply", c)
            }
            "inspect_request" => {
                let c = self.inspect(msg);
                self.reply(msg, "inspect_reply", c)
            }
            "is_complete_request" => {
                let (status, indent) = cells::is_complete(msg.content_str("code"));
                let mut c = json!({ "status": status });
                if status == "incomplete" {
                    c["indent"] = json!(indent);
                }
                self.reply(msg, "is_complete_reply", c)
            }
            "history_request" => {
                let c = self.history_reply(&msg.content);
                self.reply(msg, "history_reply", c)
            }
            "comm_info_request" => self.reply(
                msg,
                "comm_info_reply",
                json!({ "status": "ok", "comms": {} }),
            ),
            "comm_open" => {
                // No comm targets: tell the front end the comm is closed.
                let id = msg.content.get("comm_id").cloned().unwrap_or(Value::Null);
                self.shared
                    .publish(msg, "comm_close", json!({ "comm_id": id, "data": {} }));
            }
            "comm_msg" | "comm_close" => {}
            other => eprintln!("gim kernel: ignoring unknown shell message `{other}`"),
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
    fn execute(&mut self, msg: &Message) {
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

    fn engine(&mut self) -> Result<&mut RustEngine, CellError> {
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
    fn session_now(&self) -> Option<MutexGuard<'_, Session>> {
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

    fn complete(&mut self, msg: &Message) -> Value {
        let code = msg.content_str("code").to_string();
        let cursor_chars = msg
            .content
            .get("cursor_pos")
            .and_then(Value::as_u64)
            .unwrap_or(code.chars().count() as u64);
        let cursor = cells::char_to_byte(&code, cursor_chars as usize);
        let (matches, start, end) = match cells::target_at(&code, cursor) {
            CursorTarget::Magic {
                line,
                cursor,
                offset,
            } => {
                let c = match self.session_now() {
                    Some(session) => session.complete(&line, cursor),
                    None => Default::default(),
                };
                (c.matches, offset + c.cursor_start, offset + c.cursor_end)
            }
            CursorTarget::Rust {
                code: src,
                cursor: c,
                offset,
            } => match self.engine() {
                Ok(engine) => match engine.complete(&src, c) {
                    Some((m, s, e)) => (m, offset + s, offset + e),
                    None => (vec![], cursor, cursor),
                },
                Err(_) => (vec![], cursor, cursor),
            },
        };
        json!({
            "status": "ok",
            "matches": matches,
            "cursor_start": cells::byte_to_char(&code, start),
            "cursor_end": cells::byte_to_char(&code, end),
            "metadata": {},
        })
    }

    fn inspect(&mut self, msg: &Message) -> Value {
        let code = msg.content_str("code");
        let cursor_chars = msg
            .content
            .get("cursor_pos")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let cursor = cells::char_to_byte(code, cursor_chars as usize);
        let found = match cells::target_at(code, cursor) {
            CursorTarget::Magic { line, cursor, .. } => {
                self.session_now().and_then(|s| s.inspect(&line, cursor))
            }
            CursorTarget::Rust { .. } => None,
        };
        match found {
            Some(b) => {
                json!({ "status": "ok", "found": true, "data": Value::Object(b.data), "metadata": Value::Object(b.metadata) })
            }
            None => json!({ "status": "ok", "found": false, "data": {}, "metadata": {} }),
        }
    }

    fn history_reply(&self, content: &Value) -> Value {
        let get = |k: &str| content.get(k).and_then(Value::as_i64);
        let all = self.history.iter();
        let entries: Vec<&HistoryEntry> =
            match content.get("hist_access_type").and_then(Value::as_str) {
                Some("tail") => {
                    let n = get("n").unwrap_or(10).max(0) as usize;
                    all.skip(self.history.len().saturating_sub(n)).collect()
                }
                Some("range") => {
                    let start = get("start").unwrap_or(0);
                    let stop = get("stop").unwrap_or(i64::MAX);
                    all.filter(|h| (h.count as i64) >= start && (h.count as i64) < stop)
                        .collect()
                }
                Some("search") => {
                    let pattern = content
                        .get("pattern")
                        .and_then(Value::as_str)
                        .unwrap_or("*");
                    let mut hits: Vec<&HistoryEntry> =
                        all.filter(|h| glob_match(pattern, &h.input)).collect();
                    if content
                        .get("unique")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                    {
                        // Keep the latest occurrence of each input.
                        let mut seen = std::collections::HashSet::new();
                        hits.reverse();
                        hits.retain(|h| seen.insert(h.input.as_str()));
                        hits.reverse();
                    }
                    if let Some(n) = get("n") {
                        hits = hits.split_off(hits.len().saturating_sub(n.max(0) as usize));
                    }
                    hits
                }
                _ => Vec::new(),
            };
        let with_output = content
            .get("output")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let history: Vec<Value> = entries
            .iter()
            .map(|h| {
                if with_output {
                    json!([0, h.count, [h.input, h.output]])
                } else {
                    json!([0, h.count, h.input])
                }
            })
            .collect();
        json!({ "status": "ok", "history": history })
    }
}

/// With `GIM_FAULT_INJECTION=1`, any shell request whose code holds this text panics in its
/// handler: the tests prove the panic guard on a real kernel, since no known input panics.
const PANIC_PROBE: &str = "__gim_panic_probe__";

fn fault_injection() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("GIM_FAULT_INJECTION").is_ok_and(|v| v == "1"))
}

fn magic_error(e: MagicError) -> CellError {
    let mut detail = Vec::new();
    if !e.usage.is_empty() {
        detail.push(String::new());
        detail.push(format!("usage: {}", e.usage));
    }
    CellError::new("MagicError", &e.message, detail)
}

/// `*` / `?` glob matching for history search.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}
