//! BodyEval and ImageInfo `eval:` functions over the message's text: `tvd_vertical_words`
//! (words spelled out one letter at a time), `check_stock_info` (stock-tip "Symbol: … Target
//! price: …" lines) and `image_to_text_ratio` (little text for the pixels of its images).
//!
//! Guarantees: each follows its plugin's semantics, quirks included (the agreement test runs
//! them beside SpamAssassin's); each reads text already bounded by the message view, in linear
//! time; none panics.

use std::sync::LazyLock;

use regex::Regex;

use super::message::ParsedMessage;

/// SpamAssassin's MAX_BODY_LINE_LENGTH, the chunk size of `split_into_array_of_short_paragraphs`.
const MAX_BODY_LINE: usize = 2048;

/// `tvd_vertical_words(MIN, MAX)`: the largest per cent of spaces to other characters over the
/// body's lines longer than five characters (100 when spaces outnumber them; -1 without such
/// lines) is at least MIN and below MAX (a MAX of 100 or more counts as 101).
pub fn vertical_words(lines: &[String], min: f64, max: f64) -> bool {
    let max = if max >= 100.0 { 101.0 } else { max };
    let mut most: i64 = -1;
    for line in lines {
        let len = line.chars().count();
        if len <= 5 {
            continue;
        }
        let spaces = line.chars().filter(|&c| c == ' ').count();
        let others = len - spaces;
        let pct = if spaces > others || others == 0 { 100 } else { (100 * spaces / others) as i64 };
        most = most.max(pct);
    }
    let most = most as f64;
    most >= min && most < max
}

/// `check_stock_info(MIN)`: in the first text/plain part, how many different stock-tip labels
/// ("Symbol:", "Target price:", "Sector:", …) open a `label: value` line; true at MIN or more
/// (always, for a MIN of 0).
pub fn stock_info(msg: &ParsedMessage, min: f64) -> bool {
    min == 0.0 || stock_labels(msg) as f64 >= min
}

fn stock_labels(msg: &ParsedMessage) -> usize {
    static LABEL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?m)^\s*([^:\s][^:\n]{2,29})\s*:\s*\S").expect("valid"));
    static STOCK: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^(trad(?:e|ing)date|company(?:name)?|s\w?(?:t\w?o\w?c\w?k|y\w?m(?:\w?b\w?o\w?l)?)|t(?:arget|icker)|(?:opening|current)p(?:rice)?|p(?:rojected|osition)|expectations|weeks?high|marketperformance|(?:year|week|month|day|price)(?:target|estimates?)|sector|r(?:ecommendation|ating))$",
        )
        .expect("valid")
    });
    let Some(text) = msg.first_plain_text() else { return 0 };
    let mut seen: Vec<String> = Vec::new();
    for chunk in short_paragraphs(&text) {
        for caps in LABEL.captures_iter(chunk) {
            let label: String = caps[1].to_lowercase().chars().filter(char::is_ascii_lowercase).collect();
            if let Some(m) = STOCK.captures(&label)
                && !seen.iter().any(|s| s == &m[1])
            {
                seen.push(m[1].to_string());
            }
        }
    }
    seen.len()
}

/// SpamAssassin's `split_into_array_of_short_paragraphs`: pieces of about 2 to 4 KB, cut after
/// a newline, else after a `>`, else after a space, else anywhere (here: at a character
/// boundary).
fn short_paragraphs(text: &str) -> Vec<&str> {
    if text.len() <= MAX_BODY_LINE {
        return vec![text];
    }
    let mut out = Vec::new();
    let mut ofs = 0;
    while text.len() - ofs > 2 * MAX_BODY_LINE {
        let from = ofs + MAX_BODY_LINE;
        let within = |j: Option<usize>| j.filter(|&j| j - ofs < 2 * MAX_BODY_LINE);
        let find = |c: char| text.get(from..).and_then(|t| t.find(c)).map(|j| from + j);
        let end = within(find('\n'))
            .or_else(|| within(find('>')))
            .or_else(|| within(find(' ')))
            .map_or_else(|| boundary_before(text, from + 1), |j| j + 1);
        out.push(&text[ofs..end]);
        ofs = end;
    }
    if ofs < text.len() {
        out.push(&text[ofs..]);
    }
    out
}

/// The largest character boundary of `text` at or before `i` (and after 0 when possible).
fn boundary_before(text: &str, i: usize) -> usize {
    (1..=i.min(text.len())).rev().find(|&j| text.is_char_boundary(j)).unwrap_or(text.len())
}

/// `image_to_text_ratio(TYPE, MIN, MAX)`: the characters of `text` (the body's lines for a body
/// rule, the decoded raw parts for a rawbody rule) per pixel covered by images of TYPE, in
/// [MIN, MAX); false without text or without such pixels.
pub fn image_to_text_ratio(text: &[String], pixels: Option<f64>, min: f64, max: f64) -> bool {
    let len: usize = text.iter().map(|t| t.chars().count()).sum();
    match pixels {
        Some(pixels) if len > 0 && pixels > 0.0 => {
            let ratio = len as f64 / pixels;
            ratio >= min && ratio < max
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn vertical_words_take_the_most_spaced_line() {
        assert!(!vertical_words(&lines(&["short", "12345"]), 0.0, 10.0), "no line over five characters: -1");
        assert!(vertical_words(&lines(&["plain words here"]), 0.0, 20.0), "2 spaces to 14 others: 14 %");
        assert!(!vertical_words(&lines(&["plain words here"]), 0.0, 10.0));
        assert!(vertical_words(&lines(&["plain", "a  b  c  d"]), 100.0, 100.0), "spaces outnumber letters: 100, and MAX 100 reads 101");
    }

    #[test]
    fn stock_tips_count_distinct_labels_of_the_first_plain_part() {
        let tip = b"Subject: hot pick\r\nContent-Type: text/plain\r\n\r\nCompany Name: Acme Corp\r\nSymbol: ACME\r\nS-y-m-b-o-l: again\r\n\
Target: $5\r\nTarget Price: $6\r\nhello: world\r\n";
        let msg = ParsedMessage::parse(tip);
        assert_eq!(
            stock_labels(&msg),
            3,
            "companyname, symbol (twice, counted once) and target; 'targetprice' and 'hello' are no stock labels"
        );
        assert!(stock_info(&msg, 3.0) && !stock_info(&msg, 4.0));
        let html = ParsedMessage::parse(b"Subject: x\r\nContent-Type: text/html\r\n\r\n<p>Symbol: ACME</p><p>Sector: mining</p>\r\n");
        assert_eq!(stock_labels(&html), 0, "only a text/plain part is read");
        assert!(stock_info(&html, 0.0), "a MIN of 0 always holds");
    }

    #[test]
    fn short_paragraphs_cut_long_text_after_newlines() {
        let text = format!("{}\n{}\n{}", "a".repeat(3000), "b".repeat(3000), "c".repeat(100));
        let parts = short_paragraphs(&text);
        assert_eq!(parts.concat(), text);
        assert_eq!(parts[0].len(), 3001, "cut after the first newline past 2 KB");
        assert_eq!(short_paragraphs("short"), ["short"]);
        let unbroken = "é".repeat(5000);
        assert_eq!(short_paragraphs(&unbroken).concat(), unbroken, "no newline, '>' or space: cut at a character boundary");
    }

    #[test]
    fn image_ratio_needs_text_and_pixels() {
        let text = lines(&["x".repeat(100).as_str()]);
        assert!(image_to_text_ratio(&text, Some(20_000.0), 0.0, 0.008), "100 characters over 20,000 pixels: 0.005");
        assert!(!image_to_text_ratio(&text, Some(10_000.0), 0.0, 0.008), "0.01");
        assert!(!image_to_text_ratio(&text, Some(0.0), 0.0, 0.008) && !image_to_text_ratio(&text, None, 0.0, 1.0));
        assert!(!image_to_text_ratio(&[], Some(20_000.0), 0.0, 0.008));
    }
}
