//! The web listener's sockets: every connection lives at most [`CONNECTION_DEADLINE`] (reads and
//! writes fail after it, so a client that trickles bytes cannot hold a slot), and at most
//! [`MAX_CONNECTIONS`] are open at once (more wait in the kernel's backlog). Handlers learn the
//! client's address as [`ClientAddr`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// The longest one HTTP connection may stay open.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;

/// A TCP stream that fails every read and write once its deadline has passed.
pub struct Deadlined {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl Deadlined {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "HTTP connection deadline")
}

impl AsyncRead for Deadlined {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Deadlined {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The address of the client a request came from (`ConnectInfo<ClientAddr>` in a handler).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, WebListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, WebListener>) -> ClientAddr {
        ClientAddr(*stream.remote_addr())
    }
}

/// A TCP listener handing out [`Deadlined`] streams, within [`MAX_CONNECTIONS`].
pub struct WebListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl WebListener {
    pub fn new(listener: TcpListener) -> WebListener {
        WebListener { listener, slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)) }
    }
}

impl axum::serve::Listener for WebListener {
    type Io = Deadlined;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Deadlined, SocketAddr) {
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                // The semaphore is never closed; wait and try again rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let deadline = Box::pin(tokio::time::sleep(CONNECTION_DEADLINE));
                    return (Deadlined { stream, deadline, _slot: slot }, peer);
                }
                Err(error) => {
                    tracing::warn!(event = "web_accept_error", error = %error);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}
