//! The quarantine as a test sees it: moat's own store (SQLite in its state directory) and key,
//! opened directly.

use super::{DEADLINE, Moat, block_on, wait_until};
use moat::store::vault::Vault;
use moat::store::{QuarantineItem, Store};
use std::time::Duration;

/// A quarantine item with its contents opened with moat's key.
pub struct Held {
    pub item: QuarantineItem,
    pub contents: Vec<u8>,
}

/// Blocking helpers on moat's store for tests.
pub trait StoreExt {
    fn get_preferences_blocking(&self, address: &str) -> moat::store::Preferences;
    /// Adds `entry` to a user's list directly in the store, as an older version (or another
    /// tool) could have.
    fn add_list_entry_blocking(&self, address: &str, kind: moat::store::ListKind, entry: &str);
    /// Replaces a user's preferences directly in the store, as the Message Center would.
    fn set_preferences_blocking(&self, address: &str, prefs: &moat::store::Preferences);
}

impl StoreExt for Store {
    fn get_preferences_blocking(&self, address: &str) -> moat::store::Preferences {
        block_on(self.get_preferences(address)).expect("read preferences")
    }

    fn add_list_entry_blocking(&self, address: &str, kind: moat::store::ListKind, entry: &str) {
        let entry = moat::lists::Entry::parse(entry).expect("a valid list entry");
        block_on(self.add_list_entry(address, kind, &entry)).expect("add a list entry");
    }

    fn set_preferences_blocking(&self, address: &str, prefs: &moat::store::Preferences) {
        block_on(self.set_preferences(address, prefs, moat::store::unix_now())).expect("set preferences");
    }
}

impl Moat {
    /// moat's store, opened beside the running server.
    pub fn store(&self) -> Store {
        block_on(Store::open_sqlite(&self.state_dir().join("moat.db"))).expect("open moat's store")
    }

    /// Every item in the quarantine (any state), newest first, contents opened.
    pub fn quarantine(&self) -> Vec<Held> {
        let vault = Vault::open(&self.state_dir().join("vault.key")).expect("open moat's key");
        block_on(async {
            let store = Store::open_sqlite(&self.state_dir().join("moat.db")).await.expect("open moat's store");
            let items = store.list_items("", None, 1000, 0).await.expect("list quarantine");
            let mut held = Vec::new();
            for item in items {
                let contents = match store.get_content(&item.id).await {
                    Ok(sealed) => vault.open_sealed(&item.id, &sealed).expect("contents open with moat's key"),
                    Err(_) => Vec::new(),
                };
                held.push(Held { item, contents });
            }
            held
        })
    }

    /// Waits until the quarantine holds `n` items (copies move into the store just after the
    /// 250) and returns them; panics if it holds more.
    pub fn wait_quarantined(&self, n: usize) -> Vec<Held> {
        let held = wait_until(&format!("{n} quarantined item(s)"), DEADLINE, || {
            let held = self.quarantine();
            (held.len() >= n).then_some(held)
        });
        assert_eq!(held.len(), n, "more items quarantined than expected");
        held
    }

    /// Asserts that the quarantine stays at `n` items for a moment (nothing more arrives).
    pub fn assert_quarantine_stays(&self, n: usize) {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(self.quarantine().len(), n, "quarantine size");
    }
}

/// One HTTP/1.1 exchange with moat's web listener (`Connection: close`).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The header section, lower-cased names kept as sent.
    pub headers: String,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Sends `method path` (with `body` as a form, if any) to 127.0.0.1:`port`.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> HttpResponse {
    http_with(port, method, path, &[], body)
}

/// [`http`] with extra request header lines (`"Cookie: a=b"`).
pub fn http_with(port: u16, method: &str, path: &str, headers: &[&str], body: &str) -> HttpResponse {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the web listener");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the HTTP response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    HttpResponse { status, headers: head.to_string(), body: body.to_string() }
}

/// The `[web]` section for a listener on `port`, with links under http://127.0.0.1:`port`.
pub fn web_section(port: u16) -> String {
    format!("\n[web]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n")
}

/// The path of a link URL (`http://127.0.0.1:PORT/l/TOKEN` → `/l/TOKEN`).
pub fn link_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or_else(|| "/".to_string(), |i| rest[i..].to_string())
}

/// The URL after `label` in an email's text (a digest, a login email).
pub fn url_after(text: &str, label: &str) -> String {
    let start = text.find(label).unwrap_or_else(|| panic!("{label:?} in:\n{text}")) + label.len();
    text[start..].split_whitespace().next().expect("a URL").to_string()
}

/// The text part of an email moat sent.
pub fn text_part(data: &[u8]) -> String {
    let parsed = mail_parser::MessageParser::default().parse(data).expect("the email parses");
    parsed.body_text(0).expect("a text part").into_owned()
}

/// The Message Center session cookie (`moat_session=...`) a login link's page sets.
pub fn session_from_link(web: u16, url: &str) -> String {
    let opened = http(web, "GET", &link_path(url), "");
    assert_eq!(opened.status, 303, "a login link opens the Message Center: {opened:?}");
    assert_eq!(opened.header("Location").as_deref(), Some("/mc"));
    let cookie = opened.header("Set-Cookie").expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    cookie.split(';').next().unwrap().to_string()
}

/// The CSRF token in a Message Center or admin page's forms.
pub fn csrf_of(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page[start..].split('"').next().unwrap().to_string()
}
