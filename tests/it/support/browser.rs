//! A real browser for the web UI tests: Debian's headless Chromium driven by its ChromeDriver
//! over the W3C WebDriver protocol (JSON over HTTP on loopback), with a small client of our own.

use super::{DEADLINE, free_port, port_accepts, require_program, temp_dir, wait_until};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

/// An element found on the page (its WebDriver reference).
#[derive(Debug, Clone)]
pub struct Element(String);

/// The narrowest window Chromium opens (narrower sizes are emulated).
const MIN_WINDOW_WIDTH: u32 = 500;

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Starts ChromeDriver and a headless Chromium window of `width` × `height` pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        let chromedriver = require_program("chromedriver");
        let chromium = require_program("chromium");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        wait_until("chromedriver listening", DEADLINE, || port_accepts(port).then_some(()));
        let profile = temp_dir();
        let mut browser = Browser { driver, port, session: String::new(), _profile: profile };
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let mut options = json!({"binary": chromium, "args": args});
        if width < MIN_WINDOW_WIDTH {
            // A window cannot be this narrow: emulate a phone's screen instead.
            options["mobileEmulation"] = json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0, "touch": true}});
        }
        let created = browser.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}})),
        );
        browser.session = created["sessionId"].as_str().unwrap_or_else(|| panic!("a WebDriver session: {created}")).to_string();
        // The screen (emulated) or the window is as wide as asked.
        let shown = browser.script(if width < MIN_WINDOW_WIDTH { "return screen.width;" } else { "return window.innerWidth;" });
        assert_eq!(shown.as_u64(), Some(u64::from(width)), "the browser is {shown} px wide, not {width}");
        browser
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let value = self.try_call(method, path, body);
        if let Some(error) = value.get("error") {
            panic!("WebDriver {method} {path}: {error}: {}", value["message"]);
        }
        value
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = if path == "/session" { path.to_string() } else { format!("/session/{}{path}", self.session) };
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect to chromedriver");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        // ChromeDriver keeps the connection open: read the head, then Content-Length bytes.
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        let (head_end, length) = loop {
            let n = stream.read(&mut chunk).expect("chromedriver's answer");
            assert!(n > 0, "chromedriver closed the connection: {}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&chunk[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length =
                    head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0);
                break (end + 4, length);
            }
        };
        while raw.len() < head_end + length {
            let n = stream.read(&mut chunk).expect("chromedriver's answer");
            assert!(n > 0, "chromedriver's answer was cut short");
            raw.extend_from_slice(&chunk[..n]);
        }
        let json = String::from_utf8_lossy(&raw[head_end..head_end + length]).into_owned();
        let parsed: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("WebDriver answer is not JSON ({e}): {json}"));
        parsed.get("value").cloned().unwrap_or(parsed)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    pub fn title(&self) -> String {
        self.call("GET", "/title", None).as_str().unwrap_or_default().to_string()
    }

    pub fn source(&self) -> String {
        self.call("GET", "/source", None).as_str().unwrap_or_default().to_string()
    }

    /// The elements matching a CSS selector.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.call("POST", "/elements", Some(json!({"using": "css selector", "value": css})));
        found
            .as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT_KEY].as_str().map(|id| Element(id.to_string()))).collect())
            .unwrap_or_default()
    }

    /// The one element matching a CSS selector (panics if there is none).
    pub fn find(&self, css: &str) -> Element {
        self.find_all(css).into_iter().next().unwrap_or_else(|| panic!("no element {css:?} on {}:\n{}", self.url(), self.source()))
    }

    pub fn click(&self, element: &Element) {
        self.call("POST", &format!("/element/{}/click", element.0), Some(json!({})));
    }

    pub fn type_into(&self, element: &Element, text: &str) {
        self.call("POST", &format!("/element/{}/value", element.0), Some(json!({"text": text})));
    }

    /// Empties an input field.
    pub fn clear(&self, element: &Element) {
        self.call("POST", &format!("/element/{}/clear", element.0), Some(json!({})));
    }

    pub fn text_of(&self, element: &Element) -> String {
        self.call("GET", &format!("/element/{}/text", element.0), None).as_str().unwrap_or_default().to_string()
    }

    pub fn selected(&self, element: &Element) -> bool {
        self.call("GET", &format!("/element/{}/selected", element.0), None).as_bool().unwrap_or(false)
    }

    /// The page's visible text.
    pub fn body_text(&self) -> String {
        self.text_of(&self.find("body"))
    }

    /// Waits until the page (after a click that navigates) has `title`.
    pub fn wait_title(&self, title: &str) {
        wait_until(&format!("a page titled {title:?}"), DEADLINE, || {
            (self.try_call("GET", "/title", None).as_str() == Some(title)).then_some(())
        });
    }

    /// Waits until the page's visible text contains `needle`; returns that text.
    pub fn wait_text(&self, needle: &str) -> String {
        wait_until(&format!("{needle:?} on the page"), DEADLINE, || {
            let found = self.try_call("POST", "/element", Some(json!({"using": "css selector", "value": "body"})));
            let id = found[ELEMENT_KEY].as_str()?;
            let text = self.try_call("GET", &format!("/element/{id}/text"), None).as_str()?.to_string();
            text.contains(needle).then_some(text)
        })
    }

    /// Runs a script in the page (the test's own probe, not the page's) and returns its value.
    pub fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Runs an asynchronous script in the page (it calls its last argument with the result)
    /// and returns that result.
    pub fn script_async(&self, script: &str) -> Value {
        self.call("POST", "/execute/async", Some(json!({"script": script, "args": []})))
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let encoded = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap_or_default()).expect("a base64 PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// The text of an open alert dialog, if any (a script on the page would have opened it).
    pub fn alert(&self) -> Option<String> {
        let value = self.try_call("GET", "/alert/text", None);
        if value.get("error").is_some() { None } else { value.as_str().map(str::to_string) }
    }

    /// Switches into the frame `element`, or back to the page for `None`.
    pub fn frame(&self, element: Option<&Element>) {
        let id = element.map_or(Value::Null, |e| json!({ELEMENT_KEY: e.0}));
        self.call("POST", "/frame", Some(json!({"id": id})));
    }

    /// Presses keys on the focused element (`\u{E004}` is Tab, `\u{E007}` Enter).
    pub fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|k| [json!({"type": "keyDown", "value": k.to_string()}), json!({"type": "keyUp", "value": k.to_string()})])
            .collect();
        self.call("POST", "/actions", Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.try_call("DELETE", "", None)));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
