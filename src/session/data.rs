//! End of data: checks the finished body, prepends our Received header, spools durably, says 250.
//!
//! Guarantees: `250` is returned only after `Spool::store` returned (message and directory
//! fsynced); a spool failure is a 4xx (452 when the disk is full), so the sender keeps the
//! message. The message log line holds envelope metadata only.

use super::Session;
use crate::smtp::body::Body;
use crate::smtp::received::{Protocol, ReceivedInfo, received_header};
use crate::smtp::reply::{Reply, replies};
use crate::spool::{Envelope, Spool, SpoolError};

impl Session {
    /// Consumes the transaction; the reply ends it whatever happens.
    pub(super) async fn finish_message(&mut self, body: Body) -> Reply {
        let Some(tx) = self.tx.take() else {
            return replies::bad_sequence("Need MAIL before DATA");
        };
        self.bdat = None;
        let size = body.size();
        let recipients: Vec<String> = tx.recipients.iter().map(|m| m.address()).collect();
        let refusal = if body.too_big() {
            Some(replies::size_exceeded())
        } else if body.has_nul() {
            Some(replies::nul_in_message())
        } else {
            None
        };
        if let Some(reply) = refusal {
            self.log_message("-", &tx.mail.sender, &recipients, size, &reply);
            return reply;
        }
        let id = Spool::new_id();
        let envelope = Envelope {
            id: id.clone(),
            received_at: chrono::Utc::now().timestamp(),
            client_ip: self.peer,
            helo: self.helo.clone().unwrap_or_default(),
            sender: tx.mail.sender.clone(),
            recipients: recipients.clone(),
            smtputf8: tx.mail.smtputf8,
            body_8bit: tx.mail.body_8bit,
            tls: self.conn.tls_description(),
        };
        let mut message = self.received(&envelope).into_bytes();
        message.extend_from_slice(&body.finish());
        let spool = self.shared.spool.clone();
        let stored = tokio::task::spawn_blocking(move || spool.store(&envelope, &message)).await;
        let reply = match stored {
            Ok(Ok(())) => {
                self.messages += 1;
                self.shared.queue.submit(id.clone());
                replies::queued(&id)
            }
            Ok(Err(error)) => {
                tracing::error!(event = "spool_error", id = %id, error = %error);
                if matches!(error, SpoolError::DiskFull { .. }) { replies::storage_full() } else { replies::local_error() }
            }
            Err(_) => replies::local_error(),
        };
        self.log_message(&id, &tx.mail.sender, &recipients, size, &reply);
        reply
    }

    fn received(&self, envelope: &Envelope) -> String {
        let tls = envelope.tls.as_deref();
        let protocol = match (envelope.smtputf8, self.esmtp, tls.is_some()) {
            (true, _, true) => Protocol::Utf8Smtps,
            (true, _, false) => Protocol::Utf8Smtp,
            (false, true, true) => Protocol::Esmtps,
            (false, true, false) => Protocol::Esmtp,
            (false, false, _) => Protocol::Smtp,
        };
        let for_recipient = match envelope.recipients.as_slice() {
            [only] => Some(only.as_str()),
            _ => None,
        };
        received_header(&ReceivedInfo {
            helo: &envelope.helo,
            client_ip: envelope.client_ip,
            client_name: None,
            by: &self.config.hostname,
            protocol,
            tls,
            id: &envelope.id,
            for_recipient,
            date: chrono::Utc::now().fixed_offset(),
        })
    }

    fn log_message(&self, id: &str, sender: &str, recipients: &[String], size: usize, reply: &Reply) {
        tracing::info!(
            event = "message",
            queue_id = id,
            client_ip = %self.peer,
            helo = self.helo.as_deref().unwrap_or(""),
            sender,
            recipients = recipients.join(","),
            size,
            tls = self.conn.is_tls(),
            outcome = if reply.is_positive() { "accepted" } else { "refused" },
            reply = reply.summary(),
        );
    }
}
