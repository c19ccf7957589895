//! What a systemd unit hands Gatehouse: listening sockets (socket activation, the
//! `LISTEN_FDS` protocol of sd_listen_fds(3)) and a socket to report readiness on
//! (`NOTIFY_SOCKET`, sd_notify(3), for `Type=notify`).
//!
//! With `gatehouse.socket`, systemd owns the listening sockets: while the service restarts
//! (an upgrade), connection attempts wait in the socket's queue instead of being refused,
//! and the new process accepts them.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The first descriptor sd_listen_fds(3) passes.
const FIRST_FD: RawFd = 3;

/// Takes the listening TCP sockets systemd passed to this process, if it passed any, and
/// hands them to the listeners (`gatehouse_proxy::listener::inherit`), which use them
/// instead of binding when a configured address matches. Returns their addresses.
/// Descriptors that are not listening TCP sockets are reported and closed.
pub fn take_listeners() -> Vec<SocketAddr> {
    let ours = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<RawFd>().ok()).unwrap_or(0);
    if !ours || count <= 0 {
        return Vec::new();
    }
    let mut sockets = Vec::new();
    // An absurd count is not trusted past what a process could have been given.
    for fd in FIRST_FD..FIRST_FD.saturating_add(count.min(1024)) {
        let socket = socket2::Socket::from(adopt(fd));
        // Not for the processes Gatehouse starts (a DNS hook): only for this one.
        let _ = socket.set_cloexec(true);
        let listening = socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM)
            && socket.is_listener().unwrap_or(false)
            && socket.local_addr().ok().and_then(|a| a.as_socket()).is_some();
        if !listening {
            tracing::warn!(fd, "systemd passed a descriptor that is not a listening TCP socket; closed");
            continue;
        }
        sockets.push(std::net::TcpListener::from(socket));
    }
    let addrs = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
    gatehouse_proxy::listener::inherit(sockets);
    addrs
}

/// Owns descriptor `fd`, which systemd passed open for this process (LISTEN_PID is ours).
#[allow(unsafe_code)]
fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: by the sd_listen_fds protocol, descriptors 3 .. 3+LISTEN_FDS are open and
    // were given to this process (LISTEN_PID was checked). Open descriptors are never
    // handed out again by the kernel, so no file Gatehouse opened before this call holds
    // one of these numbers, and nothing else adopts them: this runs once, at start.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Tells systemd (`Type=notify`) something about this service, such as `READY=1`;
/// nothing when not run by such a unit.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else { return };
    let sent = match path.as_encoded_bytes().strip_prefix(b"@") {
        // An abstract socket address (Linux).
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| socket.send_to_addr(state.as_bytes(), &a))
        }
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "cannot notify systemd");
    }
}
