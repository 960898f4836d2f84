//! End of data: checks the finished body, hands it to `disposition` (filters, verdicts,
//! durable storage), logs one line.
//!
//! Guarantees: `250` is returned only after every copy was stored (message and directory
//! fsynced); a spool failure is a 4xx (452 when the disk is full), so the sender keeps the
//! message. The message log line holds envelope metadata only.

use super::Session;
use crate::smtp::body::Body;
use crate::smtp::received::{Protocol, ReceivedInfo, received_header};
use crate::smtp::reply::{Reply, replies};
use crate::spool::Envelope;

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
        let (reply, id) = self.dispose(&tx, body.finish()).await;
        self.log_message(&id, &tx.mail.sender, &recipients, size, &reply);
        reply
    }

    pub(super) fn received(&self, envelope: &Envelope) -> String {
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
        let outcome = if reply.is_positive() { "accepted" } else { "refused" };
        metrics::counter!("moat_messages_total", "outcome" => outcome).increment(1);
        metrics::counter!("moat_message_bytes_total").increment(size as u64);
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
