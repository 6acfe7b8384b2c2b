//! The serve loop: which thread owns what, and the sockets the main thread answers itself.
//!
//! Threads: the **main** thread owns shell, control and stdin and answers control requests
//! itself (interrupt, shutdown, kernel_info), so they are served while a cell runs; the
//! **worker** (`worker.rs`) owns the `Session` and evcxr and handles shell requests in arrival
//! order (`requests.rs` answers each type); the **iopub** thread owns the PUB socket and
//! publishes what the others send it (one queue, so order is kept); the **heartbeat** thread
//! echoes pings. Interrupts (control message or SIGINT) set one `AtomicBool` that
//! `Output::interrupted()` reads, and kill a running evcxr child.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::connection::{self, ConnectionInfo, Sockets};
use super::message::{Message, Signer};
pub use super::requests::kernel_info;
use super::rust::{RustEngine, RustInterrupt};
use super::worker::{Job, Replies, Shared, Worker};
use crate::error::panic_message;

/// How long the main loop sleeps in `poll` before checking the SIGINT flag.
const POLL_MS: i64 = 100;
/// The worker's shell replies reach the main thread (which owns the shell socket) here.
const REPLIES_ENDPOINT: &str = "inproc://gim-shell-replies";

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
