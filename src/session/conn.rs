//! The client connection: plain TCP, upgraded in place to TLS by STARTTLS.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A connection that may become TLS once.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while upgrading, or after a failed handshake.
    Gone,
}

impl Conn {
    /// Runs the TLS handshake on a plain connection. On failure the connection is gone.
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        match std::mem::replace(self, Conn::Gone) {
            Conn::Plain(tcp) => {
                let tls = acceptor.accept(tcp).await?;
                *self = Conn::Tls(Box::new(tls));
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::other("connection is not plain TCP"))
            }
        }
    }

    /// "version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384" once TLS is up.
    pub fn tls_description(&self) -> Option<String> {
        let Conn::Tls(tls) = self else { return None };
        let (_, session) = tls.get_ref();
        let version = session.protocol_version().map(|v| format!("{v:?}").replace("TLSv1_", "TLSv1."));
        let cipher = session.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite()));
        Some(format!("version={} cipher={}", version.unwrap_or_default(), cipher.unwrap_or_default()))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }
}
