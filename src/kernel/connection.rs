//! The connection file and the five ZeroMQ sockets it describes.

use std::path::Path;

use serde::Deserialize;

use super::message::{Message, Signer, WireError};

/// Contents of a Jupyter connection file.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionInfo {
    #[serde(default = "default_transport")]
    pub transport: String,
    pub ip: String,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    #[serde(default)]
    pub key: String,
    #[serde(default = "default_scheme")]
    pub signature_scheme: String,
}

fn default_transport() -> String {
    "tcp".into()
}

fn default_scheme() -> String {
    "hmac-sha256".into()
}

/// Errors while setting up the kernel's sockets.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot read connection file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid connection file {path}: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("cannot bind {what} to {endpoint}: {source}")]
    Bind {
        what: &'static str,
        endpoint: String,
        source: zmq::Error,
    },
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl ConnectionInfo {
    /// Read and parse a connection file.
    pub fn read(path: &Path) -> Result<ConnectionInfo, ConnectionError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConnectionError::Read {
            path: p.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ConnectionError::Parse { path: p, source })
    }

    /// The ZeroMQ endpoint for a port.
    pub fn endpoint(&self, port: u16) -> String {
        match self.transport.as_str() {
            "ipc" => format!("ipc://{}-{}", self.ip, port),
            _ => format!("{}://{}:{}", self.transport, self.ip, port),
        }
    }

    /// The signer for this connection's key and scheme.
    pub fn signer(&self) -> Result<Signer, WireError> {
        Signer::new(&self.signature_scheme, self.key.as_bytes())
    }
}

/// The five bound sockets.
pub struct Sockets {
    pub shell: zmq::Socket,
    pub control: zmq::Socket,
    pub stdin: zmq::Socket,
    pub iopub: zmq::Socket,
    pub heartbeat: zmq::Socket,
}

impl Sockets {
    /// Create and bind all sockets described by `info`.
    pub fn bind(ctx: &zmq::Context, info: &ConnectionInfo) -> Result<Sockets, ConnectionError> {
        let make = |kind: zmq::SocketType,
                    what: &'static str,
                    port: u16|
         -> Result<zmq::Socket, ConnectionError> {
            let s = ctx.socket(kind)?;
            // Never block process exit on unsent messages.
            s.set_linger(0)?;
            let endpoint = info.endpoint(port);
            s.bind(&endpoint).map_err(|source| ConnectionError::Bind {
                what,
                endpoint,
                source,
            })?;
            Ok(s)
        };
        Ok(Sockets {
            shell: make(zmq::ROUTER, "shell", info.shell_port)?,
            control: make(zmq::ROUTER, "control", info.control_port)?,
            stdin: make(zmq::ROUTER, "stdin", info.stdin_port)?,
            iopub: make(zmq::PUB, "iopub", info.iopub_port)?,
            heartbeat: make(zmq::REP, "heartbeat", info.hb_port)?,
        })
    }
}

/// Receive one multipart message and parse it; `Ok(None)` means it was dropped (and logged).
pub fn recv(
    socket: &zmq::Socket,
    signer: &Signer,
    channel: &str,
) -> Result<Option<Message>, zmq::Error> {
    let frames = socket.recv_multipart(0)?;
    match Message::from_frames(frames, signer) {
        Ok(m) => Ok(Some(m)),
        Err(e) => {
            eprintln!("gim kernel: dropped a message on {channel}: {e}");
            Ok(None)
        }
    }
}

/// Sign and send one message; failures are logged, not fatal.
pub fn send(socket: &zmq::Socket, signer: &Signer, msg: &Message) {
    if let Err(e) = socket.send_multipart(msg.to_frames(signer), 0) {
        eprintln!("gim kernel: failed to send {}: {e}", msg.msg_type());
    }
}

/// Echo heartbeats until the context is terminated.
pub fn heartbeat_loop(socket: zmq::Socket) {
    loop {
        match socket.recv_multipart(0) {
            Ok(frames) => {
                if socket.send_multipart(frames, 0).is_err() {
                    // A REP socket in a bad state: nothing useful to do but keep listening.
                    continue;
                }
            }
            Err(zmq::Error::ETERM) => return,
            Err(zmq::Error::EINTR) => continue,
            Err(e) => {
                eprintln!("gim kernel: heartbeat error: {e}");
                return;
            }
        }
    }
}
