//! sd_notify: tells systemd we are ready, reloading or stopping (Type=notify). A no-op when
//! not started by systemd.

use std::os::unix::net::UnixDatagram;

/// Sends one notification such as "READY=1". Errors are ignored: notification is best effort.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(socket) = UnixDatagram::unbound() else { return };
    let path = path.to_string_lossy().into_owned();
    let _ = if let Some(abstract_name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
}
