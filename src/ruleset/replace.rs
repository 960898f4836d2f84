//! ReplaceTags emulation: `replace_tag`, `replace_pre`/`replace_inter`/`replace_post`,
//! `replace_rules`, `replace_start`/`replace_end`.
//!
//! In a rule named by `replace_rules`, `<TAG>` becomes the tag's expression (tags inside tag
//! values are expanded too, up to a fixed depth), `<pre P>`/`<inter I>`/`<post Q>` markers choose
//! what goes before each tag, between two adjacent tags, and after each tag. Unknown tags are
//! left as written. Output size is bounded; never panics.

use std::collections::HashMap;

use super::cf::Config;

const MAX_DEPTH: usize = 4;
/// Expanded patterns longer than this are cut off (the regex compiler will then report them).
const MAX_OUT: usize = 256 * 1024;

/// Expands the tags in `text` using the configuration's tag tables.
pub fn expand(text: &str, cfg: &Config) -> String {
    let start = cfg.replace_start.as_deref().unwrap_or("<");
    let end = cfg.replace_end.as_deref().unwrap_or(">");
    let tables = Tables { tags: &cfg.replace_tags, pre: &cfg.replace_pre, inter: &cfg.replace_inter, post: &cfg.replace_post };
    tables.expand(text, start, end, 0)
}

struct Tables<'a> {
    tags: &'a HashMap<String, String>,
    pre: &'a HashMap<String, String>,
    inter: &'a HashMap<String, String>,
    post: &'a HashMap<String, String>,
}

impl Tables<'_> {
    fn expand(&self, text: &str, start: &str, end: &str, depth: usize) -> String {
        if start.is_empty() || end.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let (mut pre, mut inter, mut post) = ("", "", "");
        let mut rest = text;
        let mut last_tag_end_at: Option<usize> = None;
        while let Some(p) = rest.find(start) {
            let after = &rest[p + start.len()..];
            let Some(e) = after.find(end) else { break };
            let tag = &after[..e];
            let consumed = p + start.len() + e + end.len();
            let valid = !tag.is_empty() && tag.len() <= 64 && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ');
            if !valid {
                out.push_str(&rest[..p + start.len()]);
                rest = &rest[p + start.len()..];
                continue;
            }
            out.push_str(&rest[..p]);
            if let Some((kind, name)) = tag.split_once(' ') {
                let table = match kind {
                    "pre" => Some(self.pre),
                    "inter" => Some(self.inter),
                    "post" => Some(self.post),
                    _ => None,
                };
                match table.and_then(|t| t.get(name)) {
                    Some(v) => match kind {
                        "pre" => pre = v,
                        "inter" => inter = v,
                        _ => post = v,
                    },
                    None => out.push_str(&rest[p..consumed]),
                }
                last_tag_end_at = None;
            } else if let Some(value) = self.tags.get(tag) {
                if last_tag_end_at == Some(out.len()) && p == 0 {
                    out.push_str(inter);
                }
                out.push_str(pre);
                if depth < MAX_DEPTH && value.contains(start) {
                    out.push_str(&self.expand(value, start, end, depth + 1));
                } else {
                    out.push_str(value);
                }
                out.push_str(post);
                last_tag_end_at = Some(out.len());
            } else {
                out.push_str(&rest[p..consumed]);
                last_tag_end_at = None;
            }
            rest = &rest[consumed..];
            if out.len() > MAX_OUT {
                return out;
            }
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_pre_inter_post() {
        let mut c = Config::default();
        c.replace_tags.insert("V".into(), "[vu]".into());
        c.replace_tags.insert("I".into(), "[i1!]".into());
        c.replace_tags.insert("VI".into(), "<V><I>".into());
        c.replace_inter.insert("W1".into(), "\\W?".into());
        c.replace_post.insert("P2".into(), "{1,2}".into());
        assert_eq!(expand("/<V><I>/", &c), "/[vu][i1!]/");
        assert_eq!(expand("/<inter W1><V><I>x<V>/", &c), "/[vu]\\W?[i1!]x[vu]/");
        assert_eq!(expand("/<post P2><V>/", &c), "/[vu]{1,2}/");
        assert_eq!(expand("/<VI>/", &c), "/[vu][i1!]/");
        assert_eq!(expand("/(?<name>x)(?<!y)<UNKNOWN>/", &c), "/(?<name>x)(?<!y)<UNKNOWN>/");
    }
}
