//! `moat quarantine …`, `moat user purge` and `moat domain purge`: the operator's view of the quarantine. Metadata
//! only (envelope, subject, score, symbols, state, audit records): these commands never print
//! message contents — only the recipient sees those, through their own signed link.

use crate::cli_out::{out, outln};
use moat::config::Config;
use moat::control::{self, ReleaseOutcome};
use moat::spool::Spool;
use moat::store::{ItemState, QuarantineItem, Store};

#[derive(clap::Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined items, newest first: id, date, category, state, score, recipient, sender
    /// (and its From field where the domain lets admins see subjects), subject.
    List {
        /// Only this recipient's items.
        #[arg(long)]
        recipient: Option<String>,
        /// Only items in this state: held, released or deleted.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one item's metadata, symbols and release records (never its contents).
    ShowMeta { id: String },
    /// Deliver a held item to its recipient, exactly once.
    Release {
        id: String,
        /// Who is releasing, for the audit record (default: $USER).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Delete a held item and its contents.
    Delete { id: String },
    /// Generate a new encryption key; items sealed before keep opening with the retired key.
    /// Restart moat (every node) afterwards.
    RotateKey,
}

#[derive(clap::Subcommand)]
pub enum DigestCommand {
    /// Send digests now, whatever the schedule (users who opted out still get none).
    Run {
        /// Required: digests otherwise go out on the schedule by themselves.
        #[arg(long, required = true)]
        now: bool,
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
    },
    /// Print the digest ADDRESS would get now (links included), without sending it.
    Preview { address: String },
}

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Remove everything held about ADDRESS: quarantined items and their contents, release
    /// records, preferences, allow/block lists, digest cursor, greylist rows.
    Purge { address: String },
    /// Write what moat holds about ADDRESS into DIR: ADDRESS.json (quarantined items with their
    /// release records, preferences, lists, digest cursor, lessons taught) and ADDRESS.mbox (their
    /// held messages, decrypted only into that file). Files are created readable by the owner only.
    Export {
        address: String,
        #[arg(long, default_value = ".")]
        out: std::path::PathBuf,
    },
}

#[derive(clap::Subcommand)]
pub enum DomainCommand {
    /// Remove everything held about the users of DOMAIN (a customer domain that leaves):
    /// quarantined items and contents, held copies not yet stored, preferences, lists, digest
    /// cursors, greylist rows, rate counters, audit records about them, and their names on
    /// what they taught the classifier. Queued mail for the domain is listed (and dropped with
    /// --drop-queued). The purge itself is audited by domain name, time and actor only.
    Purge {
        domain: String,
        /// Purge although the domain is still in the configuration (mail for it keeps coming).
        #[arg(long)]
        force: bool,
        /// Also remove queued mail addressed only to the domain (through the running server
        /// when one answers).
        #[arg(long)]
        drop_queued: bool,
        /// Who asks, for the audit record.
        #[arg(long, default_value = "root")]
        actor: String,
    },
}

fn state_of(text: &str) -> Result<ItemState, String> {
    match text {
        "held" => Ok(ItemState::Held),
        "released" => Ok(ItemState::Released),
        "deleted" => Ok(ItemState::Deleted),
        other => Err(format!("unknown state {other:?}: use held, released or deleted")),
    }
}

fn time(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0).map_or_else(|| at.to_string(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
}

/// One line per item; control characters in sender, From or subject are shown escaped, so a
/// crafted subject cannot rewrite the operator's terminal. The From field (where it names
/// another address than the envelope sender) and the subject only where the domain's
/// `admin_sees_subjects` allows it, as in the admin console.
fn item_line(item: &QuarantineItem, with_subject: bool) -> String {
    let mut sender = if item.sender.is_empty() { "<>".to_string() } else { item.sender.escape_debug().to_string() };
    if with_subject && !item.from_address.is_empty() && !item.from_address.eq_ignore_ascii_case(&item.sender) {
        let name = if item.from_name.is_empty() { String::new() } else { format!("{} ", item.from_name.escape_debug()) };
        sender = format!("{sender} (From: {name}<{}>)", item.from_address.escape_debug());
    }
    let subject = if with_subject { item.subject.escape_debug().to_string() } else { "(subject hidden)".to_string() };
    format!(
        "{}  {}  {:<6}  {:<8}  {:>6.2}  {}  {}  {}",
        item.id,
        time(item.created_at),
        item.category.as_str(),
        item.state.as_str(),
        item.score,
        item.recipient,
        sender,
        subject
    )
}

pub async fn quarantine(config: &Config, command: QuarantineCommand) -> Result<(), String> {
    let open = || async { Store::open(config).await.map_err(|e| e.to_string()) };
    match command {
        QuarantineCommand::List { recipient, state, limit, json } => {
            let state = state.as_deref().map(state_of).transpose()?;
            let items = open().await?.list_items(recipient.as_deref().unwrap_or(""), state, limit, 0).await.map_err(|e| e.to_string())?;
            for item in &items {
                if json {
                    outln!("{}", item.metadata_json(config.admin_sees_subject(&item.recipient)));
                } else {
                    outln!("{}", item_line(item, config.admin_sees_subject(&item.recipient)));
                }
            }
            if !json {
                outln!("{} item(s)", items.len());
            }
        }
        QuarantineCommand::ShowMeta { id } => {
            let store = open().await?;
            let item = store.get_item(&id).await.map_err(|e| e.to_string())?;
            let releases = store.releases(&id).await.map_err(|e| e.to_string())?;
            let mut value = item.metadata_json(config.admin_sees_subject(&item.recipient));
            value["releases"] = releases
                .iter()
                .map(|r| serde_json::json!({"actor": r.actor, "via": r.via.as_str(), "at": r.at, "queue_id": r.ticket}))
                .collect();
            outln!("{}", serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?);
        }
        QuarantineCommand::Release { id, actor } => {
            let actor = actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
            match control::release(config, &id, &actor).await.map_err(|e| e.to_string())? {
                ReleaseOutcome::Queued(queue_id) => outln!("released {id}: queued as {queue_id}"),
                ReleaseOutcome::Spooled(queue_id) => {
                    outln!("released {id}: spooled as {queue_id}; it is delivered when moat starts")
                }
            }
        }
        QuarantineCommand::Delete { id } => {
            open().await?.set_state(&id, ItemState::Deleted).await.map_err(|e| e.to_string())?;
            outln!("deleted {id}");
        }
        QuarantineCommand::RotateKey => {
            let key_file = config.vault_key_file();
            moat::store::vault::Vault::rotate(&key_file).map_err(|e| e.to_string())?;
            outln!("new key in {}; restart moat to seal new items with it", key_file.display());
        }
    }
    Ok(())
}

pub async fn user(config: &Config, command: UserCommand) -> Result<(), String> {
    match command {
        UserCommand::Purge { address } => {
            let store = Store::open(config).await.map_err(|e| e.to_string())?;
            let purged = store.purge_user(&address).await.map_err(|e| e.to_string())?;
            outln!("purged {address}: {} quarantined item(s), {} other record(s)", purged.items, purged.other_rows);
        }
        UserCommand::Export { address, out } => {
            let config = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(config.clone()));
            let spool = std::sync::Arc::new(Spool::open(&config.load().spool_dir()).map_err(|e| e.to_string())?);
            let quarantine = moat::quarantine::Quarantine::open(config, spool).await.map_err(|e| e.to_string())?;
            let exported = quarantine.export_user(&address).await.map_err(|e| e.to_string())?;
            let name = address.to_ascii_lowercase().replace(['/', '\\'], "_");
            let json = out.join(format!("{name}.json"));
            let mbox = out.join(format!("{name}.mbox"));
            write_private(&json, &serde_json::to_vec_pretty(&exported.metadata).map_err(|e| e.to_string())?)?;
            write_private(&mbox, &exported.mbox)?;
            outln!("exported {address}: {} and {} ({} message(s))", json.display(), mbox.display(), exported.messages);
        }
    }
    Ok(())
}

/// Writes a new file readable by its owner only (it holds a user's mail).
fn write_private(path: &std::path::Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(data).and_then(|()| file.sync_all()).map_err(|e| format!("{}: {e}", path.display()))
}

pub async fn digest(config: &Config, command: DigestCommand) -> Result<(), String> {
    match command {
        DigestCommand::Run { user, .. } => {
            let (ids, queued) = control::digest_now(config, user.as_deref()).await.map_err(|e| e.to_string())?;
            let how = if queued { "queued" } else { "spooled; they are delivered when moat starts" };
            outln!("{} digest(s) {how}", ids.len());
        }
        DigestCommand::Preview { address } => {
            let config = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(config.clone()));
            let spool = std::sync::Arc::new(moat::spool::Spool::open(&config.load().spool_dir()).map_err(|e| e.to_string())?);
            let quarantine = moat::quarantine::Quarantine::open(config, spool).await.map_err(|e| e.to_string())?;
            match moat::digest::preview(&quarantine, &address, moat::store::unix_now()).await.map_err(|e| e.to_string())? {
                Some(message) => out!("{}", String::from_utf8_lossy(&message)),
                None => return Err("digests need a [web] section for their links".into()),
            }
        }
    }
    Ok(())
}

pub async fn domain(config: &Config, command: DomainCommand) -> Result<(), String> {
    let DomainCommand::Purge { domain, force, drop_queued, actor } = command;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if config.domain(&domain).is_some() && !force {
        return Err(format!("{domain} is still a [[domain]] of the configuration: remove it first (and reload), or use --force"));
    }
    let spool = std::sync::Arc::new(Spool::open(&config.spool_dir()).map_err(|e| e.to_string())?);
    let quarantine = moat::quarantine::Quarantine::open(std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(config.clone())), spool)
        .await
        .map_err(|e| e.to_string())?;
    let purged = quarantine.purge_domain(&domain, &actor).await.map_err(|e| e.to_string())?;
    outln!(
        "purged {domain}: {} quarantined item(s), {} held copie(s) not yet stored, {} other record(s)",
        purged.items,
        purged.held_copies,
        purged.other_rows
    );
    let only_theirs = purged.only_theirs();
    for entry in &purged.queued {
        outln!("queued for {domain}: {} from <{}>, {} recipient(s)", entry.id, entry.sender.escape_debug(), entry.recipients.len());
    }
    if drop_queued && !only_theirs.is_empty() {
        let removed = control::remove(config, &only_theirs).await.map_err(|e| e.to_string())?;
        outln!("dropped {} queued message(s)", removed.len());
    } else if !purged.queued.is_empty() {
        outln!("{} queued message(s) for {domain} left in the queue (--drop-queued removes those for it alone)", purged.queued.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::item_line;
    use moat::store::{Category, ItemState, QuarantineItem};

    fn item(from_name: &str, from_address: &str) -> QuarantineItem {
        QuarantineItem {
            id: "00ff".into(),
            recipient: "alice@example.test".into(),
            sender: "bounce-8f3a91@mailer.test".into(),
            subject: "Your account\u{1b}[2J".into(),
            from_name: from_name.into(),
            from_address: from_address.into(),
            date: 1_700_000_000,
            size: 100,
            score: 12.0,
            symbols: Vec::new(),
            category: Category::Spam,
            state: ItemState::Held,
            created_at: 1_700_000_000,
            expires_at: 1_702_592_000,
        }
    }

    #[test]
    fn a_listed_item_shows_its_from_field_where_admins_see_subjects_escaped() {
        let newsletter = item("PayPal \u{202E}Service", "service@paypal.test");
        let line = item_line(&newsletter, true);
        assert!(line.contains("bounce-8f3a91@mailer.test (From: PayPal \\u{202e}Service <service@paypal.test>)"), "{line}");
        assert!(line.ends_with("Your account\\u{1b}[2J"), "{line}");
        let hidden = item_line(&newsletter, false);
        assert!(!hidden.contains("PayPal") && !hidden.contains("paypal.test") && hidden.ends_with("(subject hidden)"), "{hidden}");
        let same = item("", "BOUNCE-8f3a91@mailer.test");
        assert!(!item_line(&same, true).contains("From:"), "no From where it is the envelope sender");
        let old = item("", "");
        assert!(!item_line(&old, true).contains("From:"), "items held before moat kept the From field");
    }
}
