//! TCP_NODELAY on Postgres connections.
//!
//! sqlx 0.9.0 no longer sets TCP_NODELAY (launchbadge/sqlx#4335; fixed upstream by #4336,
//! not released yet). Without it, a small message written right after a large one (a `COPY`'s
//! CopyDone after its data, a Sync after a Bind) waits in the kernel's send buffer for the
//! server's delayed ACK: ~40 ms stalls on most batches. Until a fixed sqlx is out, each new
//! connection finds its own socket and sets the option: the server tells which client port
//! it sees, and the process's socket with that local port is the one. Behind a NAT that
//! rewrites ports nothing matches and nothing changes. Delete this module once sqlx sets the
//! option again.

use std::mem::MaybeUninit;

use sqlx::PgConnection;

/// Sets TCP_NODELAY on the socket of `conn`; `Ok(false)` when it is not TCP (Unix socket) or
/// its socket could not be identified.
pub async fn set_nodelay(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let port: Option<i32> = sqlx::query_scalar("SELECT inet_client_port()")
        .fetch_one(&mut *conn)
        .await?;
    let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
        return Ok(false);
    };
    Ok(nodelay_on_local_port(port))
}

fn nodelay_on_local_port(port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    for entry in fds.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .map(|target| target.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if is_socket && local_port(fd) == Some(port) {
            let on: libc::c_int = 1;
            // SAFETY: setsockopt on a socket fd of this process with a valid int option.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            return rc == 0;
        }
    }
    false
}

/// The local TCP port of socket `fd` (IPv4 or IPv6).
fn local_port(fd: i32) -> Option<u16> {
    let mut addr = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `addr`.
    let rc = unsafe { libc::getsockname(fd, addr.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    // SAFETY: initialised by getsockname (zeroed beyond what it wrote).
    let addr = unsafe { addr.assume_init() };
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let v4: libc::sockaddr_in = unsafe { std::mem::transmute_copy(&addr) };
            Some(u16::from_be(v4.sin_port))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let v6: libc::sockaddr_in6 = unsafe { std::mem::transmute_copy(&addr) };
            Some(u16::from_be(v6.sin6_port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn finds_a_socket_by_local_port_and_sets_the_option() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let port = client.local_addr().unwrap().port();
        assert_eq!(local_port(client.as_raw_fd()), Some(port));
        assert!(!client.nodelay().unwrap());
        assert!(nodelay_on_local_port(port));
        assert!(client.nodelay().unwrap());
    }
}
