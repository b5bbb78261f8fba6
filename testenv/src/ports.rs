//! Free loopback ports.

use std::net::TcpListener;

/// Asks the OS for a free port on 127.0.0.1. The port is released before it is used, so a
/// concurrent process could take it; callers retry server start-up on failure.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
