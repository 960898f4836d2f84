//! End of data: hands a message the machine finished to `disposition` (filters, verdicts,
//! durable storage), logs one line. A message the machine refused itself (over the size limit,
//! NUL bytes) is logged the same way.
//!
//! Guarantees: `250` is returned only after every copy was stored (message and directory
//! fsynced); a spool failure is a 4xx (452 when the disk is full), so the sender keeps the
//! message. The message log line holds envelope metadata only.

use super::{Session, Transaction};
use crate::smtp::machine::Message;
use crate::smtp::received::{Protocol, ReceivedInfo, received_header};
use crate::smtp::reply::Reply;
use crate::spool::Envelope;
use crate::verdict::Evidence;

impl Session {
    /// A complete message from the machine: filters, verdicts, storage; the reply ends the
    /// transaction whatever happens.
    pub(super) async fn finish_message(&mut self, message: Message<Evidence>) {
        let Message { transaction: tx, size, content } = message;
        let recipients = recipient_list(&tx);
        let (reply, id) = self.dispose(&tx, content).await;
        self.log_message(&id, &tx.mail.sender, &recipients, size, &reply);
        self.machine.answer_message(reply);
    }

    /// A message the machine refused itself (too big, NUL bytes): logged like the others.
    pub(super) fn message_refused(&self, tx: &Transaction, size: usize, reply: &Reply) {
        self.log_message("-", &tx.mail.sender, &recipient_list(tx), size, reply);
    }

    pub(super) fn received(&self, envelope: &Envelope) -> String {
        let tls = envelope.tls.as_deref();
        let protocol = match (envelope.smtputf8, self.machine.esmtp(), tls.is_some()) {
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
            helo = self.machine.helo().unwrap_or(""),
            sender,
            recipients = recipients.join(","),
            size,
            tls = self.conn.is_tls(),
            outcome = if reply.is_positive() { "accepted" } else { "refused" },
            reply = reply.summary(),
        );
    }
}

fn recipient_list(tx: &Transaction) -> Vec<String> {
    tx.recipients.iter().map(|r| r.mailbox.address()).collect()
}
