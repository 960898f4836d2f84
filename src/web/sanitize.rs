//! The HTML part of a held message, made safe to show its own user: sanitised with ammonia
//! (an allow-list of formatting tags; no scripts, styles sheets, forms, frames, images, links,
//! event handlers or URLs of any kind), then served as its own document under a CSP that
//! sandboxes it and allows no script and no remote content, inside an `<iframe sandbox>`.
//! Three layers, so a gap in one is not a hole.

use std::collections::HashSet;

/// `html` with everything but plain formatting removed (the text of removed elements stays,
/// except that of `script` and `style`).
pub fn sanitize(html: &str) -> String {
    ammonia::Builder::default()
        .rm_tags(["img", "a", "area", "map"])
        .url_schemes(HashSet::new())
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(None)
        .strip_comments(true)
        .clean(html)
        .to_string()
}

/// The Content-Security-Policy of the sanitised document: sandboxed (no script, no forms, no
/// same-origin access), nothing loaded from anywhere, framed only by the Message Center.
pub const HTML_PART_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; sandbox; frame-ancestors 'self'; base-uri 'none'; form-action 'none'";

/// The sanitised HTML part as a whole document (`templates/web/sanitized.html`).
#[derive(askama::Template)]
#[template(path = "web/sanitized.html")]
struct Document {
    /// Sanitised by [`sanitize`]: the one HTML a template prints that no template rendered.
    html: String,
}

/// The sanitised HTML part as a whole document.
pub fn document(html: &str) -> Result<String, askama::Error> {
    askama::Template::render(&Document { html: sanitize(html) })
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn scripts_handlers_urls_and_remote_content_are_removed() {
        let hostile = r#"<p onclick="steal()">Hi <b>there</b></p><script>alert(1)</script>
            <img src="https://tracker.example/p.gif"><a href="javascript:alert(2)">click</a>
            <iframe src="https://evil.example"></iframe><form action="https://evil.example"><input name=x></form>
            <style>body{background:url(https://evil.example/x)}</style><svg onload="alert(3)"></svg>
            <div style="background:url(https://evil.example/y)">styled</div><!-- comment -->"#;
        let clean = sanitize(hostile).to_ascii_lowercase();
        for banned in [
            "<script",
            "alert(1)",
            "onclick",
            "<img",
            "tracker",
            "<a ",
            "href",
            "javascript",
            "<iframe",
            "<form",
            "<input",
            "<style",
            "url(",
            "<svg",
            "onload",
            "style=",
            "comment",
        ] {
            assert!(!clean.contains(banned), "{banned} survived: {clean}");
        }
        for kept in ["<p>hi <b>there</b></p>", "click", "styled"] {
            assert!(clean.contains(kept), "{kept} lost: {clean}");
        }
    }
}
