//! The Jupyter kernel: `gim kernel --connection-file F` and `gim kernel install`.
//!
//! Code map: `connection` (connection file, sockets), `message` (wire format, signing),
//! `serve` (threads, socket loop, control requests), `worker` (the shell-request thread, cell
//! execution), `requests` (the reply to each shell request type), `cells` (magic lines vs
//! Rust), `rust` (evcxr), `install` (kernelspec). Every byte from a socket is untrusted: no
//! `unwrap` in this module.

pub mod cells;
pub mod connection;
pub mod install;
pub mod message;
mod requests;
pub mod rust;
pub mod serve;
mod worker;

use std::path::Path;

/// Serve the kernel described by a connection file until shutdown.
pub fn run(connection_file: &Path) -> anyhow::Result<()> {
    let info = connection::ConnectionInfo::read(connection_file)?;
    serve::run(&info)
}
