//! Client tests against a scripted in-process server (the real-peer tests are in tests/).

use super::*;
use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};

fn settings(ms: u64) -> ClientSettings {
    ClientSettings { hostname: "moat.test".into(), connect_timeout: Duration::from_millis(ms), reply_timeout: Duration::from_millis(ms) }
}

/// A fake server: answers each command line through `answer`, records every byte it got.
/// DATA content is collected raw until CRLF.CRLF.
async fn fake_server(io: DuplexStream, ehlo: &'static str, answer: impl Fn(&str) -> Option<&'static str> + Send + 'static) -> Vec<u8> {
    let (read, mut write) = tokio::io::split(io);
    let mut reader = BufReader::new(read);
    let mut seen = Vec::new();
    let _ = write.write_all(b"220 fake ESMTP\r\n").await;
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
            return seen;
        }
        seen.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let reply: String = if text.starts_with("EHLO") {
            ehlo.to_string()
        } else if text == "DATA" {
            let _ = write.write_all(b"354 go ahead\r\n").await;
            let mut data = Vec::new();
            while !data.ends_with(b"\r\n.\r\n") && data != b".\r\n" {
                let mut chunk = Vec::new();
                if reader.read_until(b'\n', &mut chunk).await.unwrap_or(0) == 0 {
                    return seen;
                }
                data.extend_from_slice(&chunk);
            }
            seen.extend_from_slice(&data);
            "250 2.0.0 Ok: queued as ABC\r\n".to_string()
        } else if text == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return seen;
        } else {
            match answer(&text) {
                Some(reply) => reply.to_string(),
                None => continue,
            }
        };
        let _ = write.write_all(reply.as_bytes()).await;
    }
}

fn request<'a>(recipients: &'a [String], message: &'a [u8]) -> MessageRequest<'a> {
    MessageRequest { sender: "s@sender.test", recipients, message, body_8bit: true, smtputf8: false }
}

#[tokio::test]
async fn pipelined_transaction_keeps_each_reply_and_sends_the_body_exactly() {
    let (client, server) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(fake_server(server, "250-fake\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n", |line| {
        Some(match line {
            l if l.starts_with("MAIL") => "250 2.1.0 Ok\r\n",
            "RCPT TO:<bad@x.test>" => "550 5.1.1 <bad@x.test>: Recipient address rejected\r\n",
            "RCPT TO:<later@x.test>" => "451 4.3.0 try later\r\n",
            l if l.starts_with("RCPT") => "250 2.1.5 Ok\r\n",
            _ => "500 what\r\n",
        })
    }));
    let mut conn = Connection::handshake(Box::new(client), "fake:25".into(), settings(2000)).await.unwrap();
    assert!(conn.capabilities().pipelining);
    let rcpts: Vec<String> = vec!["good@x.test".into(), "bad@x.test".into(), "later@x.test".into()];
    let body = b"Subject: t\r\n\r\n.starts with a dot\r\n.\r\nend\r\n";
    let result = conn.send_message(&request(&rcpts, body)).await.unwrap();
    let queued = DownstreamReply::new(250, Some([2, 0, 0]), "Ok: queued as ABC");
    assert_eq!(
        result.outcomes,
        vec![
            DeliveryOutcome::Delivered(queued.clone()),
            DeliveryOutcome::Failed(DownstreamReply::new(550, Some([5, 1, 1]), "<bad@x.test>: Recipient address rejected")),
            DeliveryOutcome::Deferred(DownstreamReply::new(451, Some([4, 3, 0]), "try later")),
        ]
    );
    assert_eq!(result.final_reply, Some(queued));
    conn.quit().await;
    let seen = String::from_utf8(server.await.unwrap()).unwrap();
    let envelope = format!("MAIL FROM:<s@sender.test> BODY=8BITMIME SIZE={}\r\nRCPT TO:<good@x.test>\r\n", body.len());
    assert!(seen.contains(&envelope), "{seen}");
    assert!(seen.contains("DATA\r\nSubject: t\r\n\r\n..starts with a dot\r\n..\r\nend\r\n.\r\nQUIT"), "{seen}");
}

#[tokio::test]
async fn refused_mail_fails_every_recipient_without_sending_rcpt() {
    let (client, server) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(fake_server(server, "250 fake\r\n", |line| {
        Some(if line.starts_with("MAIL") { "553 5.7.1 sender refused\r\n" } else { "250 ok\r\n" })
    }));
    let mut conn = Connection::handshake(Box::new(client), "fake:25".into(), settings(2000)).await.unwrap();
    let rcpts: Vec<String> = vec!["a@x.test".into(), "b@x.test".into()];
    let result = conn.send_message(&request(&rcpts, b"x\r\n")).await.unwrap();
    let refused = DownstreamReply::new(553, Some([5, 7, 1]), "sender refused");
    assert_eq!(result.outcomes, vec![DeliveryOutcome::Failed(refused.clone()), DeliveryOutcome::Failed(refused)]);
    assert_eq!(result.final_reply, None);
    conn.reset().await.unwrap();
    conn.quit().await;
    let seen = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(!seen.contains("RCPT"), "{seen}");
    assert!(seen.contains("MAIL FROM:<s@sender.test>\r\nRSET"), "no BODY= when 8BITMIME is not offered: {seen}");
}

#[tokio::test]
async fn helo_is_used_when_ehlo_is_refused() {
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(fake_server(server, "502 5.5.1 no ESMTP here\r\n", |line| {
        Some(if line.starts_with("HELO moat.test") { "250 hello\r\n" } else { "500 no\r\n" })
    }));
    let conn = Connection::handshake(Box::new(client), "fake:25".into(), settings(2000)).await.unwrap();
    assert_eq!(conn.capabilities(), Capabilities::default());
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(fake_server(server, "250 fake\r\n", |_| None));
    let mut conn = Connection::handshake(Box::new(client), "fake:25".into(), settings(200)).await.unwrap();
    let started = std::time::Instant::now();
    let error = conn.reset().await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout { step: "RSET", .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(error.as_reply().status(), "4.4.2");
}

#[tokio::test]
async fn an_endless_reply_is_cut_off() {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let _ = server.write_all(b"220 hi\r\n").await;
        for _ in 0..2000 {
            if server.write_all(b"250-more and more\r\n").await.is_err() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let error = Connection::handshake(Box::new(client), "fake:25".into(), settings(2000)).await.unwrap_err();
    assert!(matches!(error, ClientError::Protocol { .. }), "{error:?}");
}

#[tokio::test]
async fn a_4xx_greeting_is_an_error_carrying_the_reply() {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let _ = server.write_all(b"421 4.3.2 too busy\r\n").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let error = Connection::handshake(Box::new(client), "fake:25".into(), settings(2000)).await.unwrap_err();
    assert_eq!(error.as_reply(), DownstreamReply::new(421, Some([4, 3, 2]), "too busy"));
}

mod starttls {
    //! STARTTLS policies against an in-process TLS server with a self-signed certificate.
    use super::*;
    use crate::config::Route;
    use rustls::ServerConfig;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncBufReadExt;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// Offer STARTTLS and do the handshake.
        Good,
        /// Do not offer STARTTLS.
        NoStartTls,
        /// Offer STARTTLS on the first connection, then answer the handshake with garbage.
        BrokenOnce,
    }

    struct Server {
        port: u16,
        connections: Arc<AtomicUsize>,
        cert_pem: String,
    }

    async fn server(mode: Mode) -> Server {
        let key = rcgen::generate_simple_self_signed(vec!["mx.test".to_string()]).unwrap();
        let cert_pem = key.cert.pem();
        let chain = vec![CertificateDer::from(key.cert.der().to_vec())];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
        let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let offer = match mode {
                    Mode::Good => true,
                    Mode::NoStartTls => false,
                    Mode::BrokenOnce => n == 0,
                };
                let broken = mode == Mode::BrokenOnce;
                tokio::spawn(session(stream, acceptor.clone(), offer, broken));
            }
        });
        Server { port, connections, cert_pem }
    }

    /// Plain part of the session until STARTTLS, then the encrypted part.
    async fn session(stream: TcpStream, acceptor: TlsAcceptor, offer: bool, broken: bool) {
        let mut plain = tokio::io::BufReader::new(stream);
        let _ = plain.get_mut().write_all(b"220 mx.test ESMTP\r\n").await;
        loop {
            let mut line = String::new();
            if plain.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let reply: &[u8] = match line.trim_end() {
                l if l.starts_with("EHLO") && offer => b"250-mx.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n",
                l if l.starts_with("EHLO") => b"250-mx.test\r\n250 PIPELINING\r\n",
                "STARTTLS" => {
                    let _ = plain.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await;
                    break;
                }
                "QUIT" => b"221 bye\r\n",
                _ => b"250 ok\r\n",
            };
            let _ = plain.get_mut().write_all(reply).await;
        }
        let mut stream = plain.into_inner();
        if broken {
            let _ = stream.write_all(b"this is not a TLS server hello\r\n").await;
            return;
        }
        let Ok(tls) = acceptor.accept(stream).await else { return };
        let mut tls = tokio::io::BufReader::new(tls);
        loop {
            let mut line = String::new();
            if tls.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let reply: &[u8] = if line.starts_with("EHLO") { b"250-mx.test\r\n250 PIPELINING\r\n" } else { b"250 ok\r\n" };
            let _ = tls.get_mut().write_all(reply).await;
        }
    }

    fn route(port: u16, tls: TlsPolicy) -> Route {
        Route { host: "127.0.0.1".into(), port, tls, ca_file: None, tls_name: None }
    }

    #[tokio::test]
    async fn opportunistic_encrypts_even_with_a_self_signed_certificate() {
        let server = server(Mode::Good).await;
        let mut conn = Connection::connect(&route(server.port, TlsPolicy::Opportunistic), &settings(5000)).await.unwrap();
        let tls = conn.tls().unwrap_or_default().to_string();
        assert!(tls.starts_with("TLSv1_"), "{tls}");
        assert!(conn.capabilities().pipelining, "capabilities come from the EHLO after STARTTLS");
        conn.reset().await.unwrap();
    }

    #[tokio::test]
    async fn opportunistic_falls_back_to_plain_text_once_when_the_handshake_fails() {
        let server = server(Mode::BrokenOnce).await;
        let conn = Connection::connect(&route(server.port, TlsPolicy::Opportunistic), &settings(5000)).await.unwrap();
        assert_eq!(conn.tls(), None);
        assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn required_verifies_against_the_ca_file_and_tls_name() {
        let server = server(Mode::Good).await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &server.cert_pem).unwrap();
        let mut route = route(server.port, TlsPolicy::Required);
        route.ca_file = Some(ca);
        route.tls_name = Some("mx.test".into());
        let conn = Connection::connect(&route, &settings(5000)).await.unwrap();
        assert!(conn.tls().is_some());

        route.tls_name = Some("other.test".into());
        let error = Connection::connect(&route, &settings(5000)).await.unwrap_err();
        assert!(matches!(error, ClientError::Tls { .. }), "wrong name must fail: {error:?}");
    }

    #[tokio::test]
    async fn required_refuses_an_unknown_certificate_and_a_server_without_starttls() {
        let server = server(Mode::Good).await;
        let mut route = route(server.port, TlsPolicy::Required);
        route.tls_name = Some("mx.test".into());
        let error = Connection::connect(&route, &settings(5000)).await.unwrap_err();
        assert!(matches!(error, ClientError::Tls { .. }), "{error:?}");
        assert_eq!(error.as_reply().code / 100, 4, "a temporary failure");
        assert_eq!(server.connections.load(Ordering::SeqCst), 1, "no plain-text fallback with tls = required");

        let plain = self::server(Mode::NoStartTls).await;
        let error = Connection::connect(&self::route(plain.port, TlsPolicy::Required), &settings(5000)).await.unwrap_err();
        assert!(matches!(error, ClientError::TlsNotOffered { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn policy_none_never_starts_tls() {
        let server = server(Mode::Good).await;
        let conn = Connection::connect(&route(server.port, TlsPolicy::None), &settings(5000)).await.unwrap();
        assert_eq!(conn.tls(), None);
    }
}
