//! Client tests against a scripted in-process server (the real-peer tests are in tests/).

use super::*;
use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};

fn settings(ms: u64) -> ClientSettings {
    ClientSettings {
        hostname: "moat.test".into(),
        connect_timeout: Duration::from_millis(ms),
        reply_timeout: Duration::from_millis(ms),
    }
}

/// A fake server: answers each command line through `answer`, records every byte it got.
/// DATA content is collected raw until CRLF.CRLF.
async fn fake_server(
    io: DuplexStream,
    ehlo: &'static str,
    answer: impl Fn(&str) -> Option<&'static str> + Send + 'static,
) -> Vec<u8> {
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
            while !data.ends_with(b"\r\n.\r\n") && !(data == b".\r\n") {
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
    let server = tokio::spawn(fake_server(
        server,
        "250-fake\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n",
        |line| {
            Some(match line {
                l if l.starts_with("MAIL") => "250 2.1.0 Ok\r\n",
                "RCPT TO:<bad@x.test>" => "550 5.1.1 <bad@x.test>: Recipient address rejected\r\n",
                "RCPT TO:<later@x.test>" => "451 4.3.0 try later\r\n",
                l if l.starts_with("RCPT") => "250 2.1.5 Ok\r\n",
                _ => "500 what\r\n",
            })
        },
    ));
    let mut conn = Connection::handshake(Box::new(client), "fake:25".into(), settings(2000)).await.unwrap();
    assert!(conn.capabilities().pipelining);
    let rcpts: Vec<String> = vec!["good@x.test".into(), "bad@x.test".into(), "later@x.test".into()];
    let body = b"Subject: t\r\n\r\n.starts with a dot\r\n.\r\nend\r\n";
    let result = conn.send_message(&request(&rcpts, body)).await.unwrap();
    let queued = Reply::new(250, Some([2, 0, 0]), "Ok: queued as ABC");
    assert_eq!(
        result.outcomes,
        vec![
            Outcome::Delivered(queued.clone()),
            Outcome::Failed(Reply::new(550, Some([5, 1, 1]), "<bad@x.test>: Recipient address rejected")),
            Outcome::Deferred(Reply::new(451, Some([4, 3, 0]), "try later")),
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
    let refused = Reply::new(553, Some([5, 7, 1]), "sender refused");
    assert_eq!(result.outcomes, vec![Outcome::Failed(refused.clone()), Outcome::Failed(refused)]);
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
    assert_eq!(error.as_reply(), Reply::new(421, Some([4, 3, 2]), "too busy"));
}
