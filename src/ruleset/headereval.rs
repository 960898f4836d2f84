//! SpamAssassin's HeaderEval checks of header form: free mail senders whose Received trail
//! their provider did not write (`check_for_forged_yahoo_received_headers`, hotmail, gmail,
//! juno, eudoramail), recipient lists sorted or alike (`sorted_recipients`,
//! `similar_recipients`), illegal bytes in a field (`check_illegal_chars`), repeated fields
//! (`check_header_count_range`), the recipient's name in the Subject (`check_for_to_in_subject`),
//! a missing To, unresolved template tags, and envelope against header sender.
//!
//! moat's own code following `Mail::SpamAssassin::Plugin::HeaderEval` (4.0), reading the fields
//! as its `get()` does in scalar context: `From:addr` is the first address, `Received` every
//! field with its line end, unfolded whitespace squeezed. Where the plugin consults its relay
//! parser (a Received hop's reverse DNS at yahoo.com) the field's `(name [address])` part is
//! read instead. Illegal characters are counted in the raw bytes of the message. Never panics.

use std::sync::LazyLock;

use regex::Regex;

use super::freemail;
use super::header::Modifier;
use super::message::{ParsedMessage, squeeze_space};

/// An IPv4 or IPv6 address, roughly as SpamAssassin's `IP_ADDRESS` finds one.
const IP: &str = r"(?:(?:\d{1,3}\.){3}\d{1,3}|(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F.]{0,15})";

fn re(pattern: &str) -> Regex {
    Regex::new(&pattern.replace("IP_ADDRESS", IP)).expect("valid")
}

/// A field's values as `get(NAME)` joins them: each with its line end.
fn get(msg: &ParsedMessage, name: &str) -> String {
    msg.header_value(name, Modifier::Decoded).map(|v| v.split('\n').map(|l| format!("{l}\n")).collect()).unwrap_or_default()
}

/// `get(NAME, undef)`: None when the field is missing.
fn get_opt(msg: &ParsedMessage, name: &str) -> Option<String> {
    msg.has_header(name).then(|| get(msg, name))
}

/// The Received fields, whitespace squeezed to single spaces.
fn received_line(msg: &ParsedMessage) -> String {
    squeeze(&get(msg, "received"))
}

fn squeeze(s: &str) -> String {
    squeeze_space(s, char::is_whitespace)
}

/// The first address of a field, lower-cased (`get('X:addr')` in scalar context).
fn first_addr(msg: &ParsedMessage, name: &str) -> String {
    freemail::header_addrs(msg, name).into_iter().next().unwrap_or_default()
}

/// SpamAssassin's `gated_through_received_hdr_remover`: an ezmlm list or MSN groups removed
/// the Received trail, or there is none.
pub fn gated_through_remover(msg: &ParsedMessage) -> bool {
    static EZMLM: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^contact \S+@\S+; run by ezmlm$"));
    static LIST_TO: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^mailing list \S+@\S+"));
    static QMAIL: LazyLock<Regex> = LazyLock::new(|| re(r"qmail \d+ invoked (?:from network|by .{3,20})\); \d+ ... \d+"));
    static MSN: LazyLock<Regex> = LazyLock::new(|| re(r"from groups\.msn\.com \(\S+\.msn\.com "));
    let rcvd = get_opt(msg, "received");
    if let Some(list) = get_opt(msg, "mailing-list")
        && EZMLM.is_match(&list)
        && LIST_TO.is_match(&get(msg, "delivered-to"))
        && QMAIL.is_match(rcvd.as_deref().unwrap_or(""))
    {
        return true;
    }
    rcvd.is_none_or(|r| MSN.is_match(&r))
}

/// Whether a Received hop's reverse DNS (the name before `[address]`) is at yahoo.com.
fn yahoo_relay(msg: &ParsedMessage) -> bool {
    static RDNS: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^from \S+ \((?:\S+@)?(\S+\.yahoo\.com) \[IP_ADDRESS\]"));
    let all = get(msg, "received");
    all.lines().any(|l| RDNS.is_match(&squeeze(l)))
}

/// `check_for_forged_yahoo_received_headers`.
pub fn forged_yahoo(msg: &ParsedMessage) -> bool {
    static PASS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
        [
            r"by web\S+\.mail\S*\.yahoo\.com via HTTP",
            r"by sonic\S+\.consmr\.mail\S*\.yahoo\.com with HTTP",
            r"by smtp\S+\.yahoo\.com with SMTP",
            r"from \[IP_ADDRESS\] by \S+\.(?:groups|scd|dcn)\.yahoo\.com with NNFMP",
            r"by \w+\.\w+\.yahoo\.com \(\d+\.\d+\.\d+/\d+\.\d+\.\d+\)(?: with ESMTP)? id \w+",
        ]
        .iter()
        .map(|p| re(p))
        .collect()
    });
    static BULK: LazyLock<Regex> = LazyLock::new(|| re(r"\bmailer\d+\.bulk\.scd\.yahoo\.com\b"));
    let from = first_addr(msg, "From");
    if !from.ends_with("yahoo.com") || !ends_with_domain(&from, "yahoo.com") {
        return false;
    }
    let mut rcvd = get(msg, "received");
    if !get(msg, "resent-from").is_empty() && !get(msg, "resent-to").is_empty() {
        let x = get(msg, "x-received");
        if !x.is_empty() {
            rcvd = x;
        }
    }
    let rcvd = squeeze(&rcvd);
    if gated_through_remover(msg) || yahoo_relay(msg) || PASS.iter().any(|p| p.is_match(&rcvd)) {
        return false;
    }
    !(BULK.is_match(&rcvd) && from.ends_with("@reply.yahoo.com"))
}

/// `\bDOMAIN$` on an address: the domain at its end, after a non-word character.
fn ends_with_domain(addr: &str, domain: &str) -> bool {
    addr.len() >= domain.len()
        && addr[addr.len() - domain.len()..].eq_ignore_ascii_case(domain)
        && addr[..addr.len() - domain.len()].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
}

/// `_check_for_forged_hotmail_received_headers`: (Received names hotmail but hotmail did not
/// write it, From is hotmail but no hotmail Received).
pub fn forged_hotmail(msg: &ParsedMessage) -> (bool, bool) {
    static PICKUP: LazyLock<Regex> = LazyLock::new(|| re(r"from mail pickup service by hotmail\.com with Microsoft SMTPSVC;"));
    static WITH_IP: LazyLock<Vec<Regex>> = LazyLock::new(|| {
        [
            r"from (?:\S*\.)?hotmail.com \(\S+\.hotmail(?:\.msn)?\.com[ )]",
            r"from \S*\.hotmail.com \(\[IP_ADDRESS\][ ):]",
            r"from \S+ by \S+\.hotmail(?:\.msn)?\.com with HTTP;",
            r"from \[66\.218.\S+\] by \S+\.yahoo\.com",
        ]
        .iter()
        .map(|p| re(p))
        .collect()
    });
    static WITH_ORIG: LazyLock<Vec<Regex>> = LazyLock::new(|| {
        [
            r"from \S*\.outbound\.protection\.outlook\.com \(\S+\.outbound\.protection\.outlook\.com[ )]",
            r"from \S*\.(?:eur|nam)prd\d+\.prod\.outlook\.com \(IP_ADDRESS\)",
        ]
        .iter()
        .map(|p| re(p))
        .collect()
    });
    static NAMES_HOTMAIL: LazyLock<Regex> = LazyLock::new(|| re(r"(?:from |HELO |helo=)\S*hotmail\.com\b"));
    static IP_RE: LazyLock<Regex> = LazyLock::new(|| re("IP_ADDRESS"));
    static ORIGINATOR: LazyLock<Regex> = LazyLock::new(|| re(r"hotmail\.com|msonline-outlook"));
    let rcvd = received_line(msg);
    if PICKUP.is_match(&rcvd) || msn_groups(msg) {
        return (false, false);
    }
    let ip = get_opt(msg, "x-originating-ip").is_some_and(|v| IP_RE.is_match(&v));
    let orig = get_opt(msg, "x-originatororg").is_some_and(|v| ORIGINATOR.is_match(&v));
    if gated_through_remover(msg)
        || (ip && WITH_IP.iter().any(|p| p.is_match(&rcvd)))
        || (orig && WITH_ORIG.iter().any(|p| p.is_match(&rcvd)))
    {
        return (false, false);
    }
    if NAMES_HOTMAIL.is_match(&rcvd) {
        return (true, false);
    }
    (false, ends_with_domain(&first_addr(msg, "From"), "hotmail.com"))
}

/// `check_for_msn_groups_headers`.
fn msn_groups(msg: &ParsedMessage) -> bool {
    static TO: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)<(\S+)@groups\.msn\.com>"));
    static SERVER: LazyLock<Regex> = LazyLock::new(|| re(r"from mail pickup service by ((?:p\d\d\.)groups\.msn\.com)\b"));
    let to = get(msg, "to");
    let Some(list) = TO.captures(&to).map(|c| c[1].to_string()) else { return false };
    let Some(server) = SERVER.captures(&get(msg, "received")).map(|c| c[1].to_string()) else { return false };
    let id = get(msg, "message-id");
    if list == "notifications" {
        return id.starts_with('<') && id.trim_end().ends_with(&format!("@{server}>"));
    }
    let list_re = regex::escape(&list);
    let id_ok = Regex::new(&format!(r"^<{list_re}-\S+@groups\.msn\.com>")).is_ok_and(|r| r.is_match(&id));
    let env = freemail::envelope_from(msg).unwrap_or_default();
    id_ok && Regex::new(&format!(r"{list_re}-bounce@groups\.msn\.com")).is_ok_and(|r| r.is_match(&env))
}

/// `check_for_forged_juno_received_headers`.
pub fn forged_juno(msg: &ParsedMessage) -> bool {
    static JUNO_RCVD: LazyLock<Regex> = LazyLock::new(|| re(r"from.*\b(?:juno|untd)\.com.*[\[(]IP_ADDRESS[\])].*by"));
    static COOKIE: LazyLock<Regex> = LazyLock::new(|| re(r" cookie\.(?:juno|untd)\.com "));
    static MAILCOM: LazyLock<Regex> = LazyLock::new(|| re(r"from.*\bmail\.com.*\[IP_ADDRESS\].*by"));
    static WEBMAIL: LazyLock<Regex> = LazyLock::new(|| re(r"from (webmail\S+\.untd\.com) \((webmail\S+\.untd\.com) \[IP_ADDRESS\]\) by"));
    static IP_RE: LazyLock<Regex> = LazyLock::new(|| re("IP_ADDRESS"));
    if !ends_with_domain(&first_addr(msg, "From"), "juno.com") || gated_through_remover(msg) {
        return false;
    }
    let xorig = get(msg, "x-originating-ip");
    let xmailer = get(msg, "x-mailer");
    let rcvd = get(msg, "received");
    if !xorig.is_empty() {
        return (!JUNO_RCVD.is_match(&rcvd) && !COOKIE.is_match(&rcvd)) || !xmailer.contains("Juno ");
    }
    if MAILCOM.is_match(&rcvd) {
        if !xmailer.contains("mail.com") {
            return true;
        }
    } else if let Some(c) = WEBMAIL.captures(&rcvd).filter(|c| c[1] == c[2]) {
        let _ = c;
        if !xmailer.starts_with("Webmail Version ") {
            return true;
        }
    } else {
        return true;
    }
    !IP_RE.is_match(&xorig)
}

/// `check_for_forged_eudoramail_received_headers`.
pub fn forged_eudoramail(msg: &ParsedMessage) -> bool {
    static WHOWHERE: LazyLock<Regex> = LazyLock::new(|| re(r"by \S*whowhere.com;"));
    static IP_RE: LazyLock<Regex> = LazyLock::new(|| re("IP_ADDRESS"));
    if !ends_with_domain(&first_addr(msg, "From"), "eudoramail.com") || gated_through_remover(msg) {
        return false;
    }
    let ip = get_opt(msg, "x-sender-ip").is_some_and(|v| IP_RE.is_match(&v));
    !(WHOWHERE.is_match(&received_line(msg)) && ip)
}

/// `check_for_forged_gmail_received_headers`.
pub fn forged_gmail(msg: &ParsedMessage) -> bool {
    static X10: LazyLock<Regex> = LazyLock::new(|| re(r"by 10\.\S+ with SMTP id \S+"));
    static X2002: LazyLock<Regex> = LazyLock::new(|| re(r"by 2002:a\d\d:\w+:\S+ with SMTP id \S+"));
    static ESMTPSA: LazyLock<Regex> = LazyLock::new(|| re(r"by smtp\.googlemail\.com with ESMTPSA id \S+"));
    if !ends_with_domain(&first_addr(msg, "From"), "gmail.com") {
        return false;
    }
    let xreceived = get(msg, "x-received");
    if X10.is_match(&xreceived) || X2002.is_match(&xreceived) || ESMTPSA.is_match(&get(msg, "received")) {
        return false;
    }
    let chars = |name: &str| get(msg, name).chars().count();
    !(chars("x-gm-message-state") >= 60 && chars("x-google-smtp-source") >= 60)
}

/// The recipients `_check_recipients` looks at: To and Cc, then Bcc when fewer than 5, with
/// repeats in a row dropped, at most 256.
fn recipients(msg: &ParsedMessage) -> Vec<String> {
    let mut inputs = raw_case_addrs(msg, "ToCc");
    if inputs.len() < 5 {
        inputs.extend(raw_case_addrs(msg, "bcc"));
    }
    let mut out: Vec<String> = Vec::new();
    for a in inputs {
        if a.is_empty() {
            break;
        }
        if out.last().is_none_or(|p| !p.eq_ignore_ascii_case(&a)) {
            out.push(a);
        }
        if out.len() == 256 {
            break;
        }
    }
    out
}

fn raw_case_addrs(msg: &ParsedMessage, name: &str) -> Vec<String> {
    msg.header_value(name, Modifier::Decoded).map(|v| v.split('\n').flat_map(freemail::addresses).collect()).unwrap_or_default()
}

/// `sorted_recipients`: seven or more recipients in sorted order.
pub fn sorted_recipients(msg: &ParsedMessage) -> bool {
    let r = recipients(msg);
    let mut sorted = r.clone();
    sorted.sort();
    r.len() >= 7 && r == sorted
}

/// `similar_recipients`' measure: the share of recipient pairs with the same first two
/// characters of the local part, or of the host on different hosts.
pub fn recipient_similarity(msg: &ParsedMessage) -> f64 {
    let r = recipients(msg);
    if r.len() < 5 {
        return 0.0;
    }
    let prefix = |s: &str| s.chars().take(2).collect::<String>();
    let users: Vec<String> = r.iter().map(|a| prefix(a)).collect();
    let fqhn: Vec<Option<&str>> = r.iter().map(|a| a.split_once('@').map(|(_, h)| h)).collect();
    let hosts: Vec<Option<String>> = fqhn.iter().map(|h| h.map(prefix)).collect();
    let (mut hits, mut pairs) = (0u64, 0u64);
    for i in 0..r.len() {
        for j in i + 1..r.len() {
            hits += u64::from(users[i] == users[j]);
            hits += u64::from(hosts[i] == hosts[j] && fqhn[i] != fqhn[j]);
            pairs += 1;
        }
    }
    hits as f64 / pairs as f64
}

/// `check_for_missing_to_header`: neither To nor Apparently-To.
pub fn missing_to(msg: &ParsedMessage) -> bool {
    get(msg, "to").is_empty() && get(msg, "apparently-to").is_empty()
}

/// `check_unresolved_template`: a `%TAG` left in a field other than the address and id fields.
pub fn unresolved_template(msg: &ParsedMessage) -> bool {
    static TAG: LazyLock<Regex> = LazyLock::new(|| re(r"%[A-Z][A-Z_-]"));
    static EXEMPT: LazyLock<Regex> = LazyLock::new(|| {
        re(r"(?i)^(?:X-VMS-To|X-UIDL|X-Face|To|Cc|From|Subject|References|In-Reply-To|(?:X-|Resent-|X-Original-)?Message-Id):")
    });
    let all = msg.header_value("ALL", Modifier::Decoded).unwrap_or_default();
    all.lines().any(|l| TAG.is_match(l) && !EXEMPT.is_match(l))
}

/// `check_for_to_in_subject(address|user)`: the first To address (or its local part) in the
/// Subject, the way the plugin's patterns place it (`Re: bob`, `bob, …`, `bob` alone, `, bob!`).
/// Plain string tests, no regex built per message.
pub fn to_in_subject(msg: &ParsedMessage, user: bool) -> bool {
    let to = first_addr_case(msg, "to");
    if to.is_empty() {
        return false;
    }
    let subject = get(msg, "subject");
    if !user {
        return contains_word_ci(&subject, &to);
    }
    let local = to.split('@').next().unwrap_or("");
    // Perl's `$` also matches before the final line end.
    let body = subject.strip_suffix('\n').unwrap_or(&subject);
    const PUNCT: &[char] = &[',', ':', ';', '!', '?', '-'];
    let reply = strip_prefix_ci(body, "re:").or_else(|| strip_prefix_ci(body, "fw:")).is_some_and(|rest| {
        let rest = rest.trim_start();
        if rest.eq_ignore_ascii_case(local) {
            return true;
        }
        let Some(head) = strip_suffix_ci(rest, local) else { return false };
        let word_end = head.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(head.len());
        word_end > 0 && head.len() > word_end && head[word_end..].chars().all(char::is_whitespace)
    });
    let leading = subject.strip_prefix(local).is_some_and(|rest| {
        let rest = rest.trim_start();
        rest.strip_prefix(PUNCT).is_some_and(|after| after.is_empty() || after.starts_with(char::is_whitespace))
    });
    let alone = body.eq_ignore_ascii_case(local);
    let after_comma = body.strip_prefix(',').and_then(|r| strip_prefix_ci(r.trim_start(), local)).is_some_and(|r| {
        let mut chars = r.chars();
        chars.next().is_some_and(|c| PUNCT.contains(&c)) && chars.next().is_none()
    });
    reply || leading || alone || after_comma
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (!prefix.is_empty() && s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let at = s.len().checked_sub(suffix.len())?;
    (!suffix.is_empty() && s.is_char_boundary(at) && s[at..].eq_ignore_ascii_case(suffix)).then(|| &s[..at])
}

/// `\bNEEDLE\b`, case-insensitively.
fn contains_word_ci(hay: &str, needle: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let (h, n) = (hay.to_lowercase(), needle.to_lowercase());
    let (Some(first), Some(last)) = (n.chars().next(), n.chars().next_back()) else { return false };
    h.match_indices(&n).any(|(at, m)| {
        let before = h[..at].chars().next_back().is_some_and(word);
        let after = h[at + m.len()..].chars().next().is_some_and(word);
        before != word(first) && after != word(last)
    })
}

fn first_addr_case(msg: &ParsedMessage, name: &str) -> String {
    raw_case_addrs(msg, name).into_iter().next().unwrap_or_default()
}

/// `check_equal_from_domains`: From and the envelope sender in different second-level domains.
pub fn from_domains_differ(msg: &ParsedMessage) -> bool {
    let second_level = |addr: &str| -> String {
        let Some((_, domain)) = addr.rsplit_once('@') else { return String::new() };
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() > 2 && labels[..labels.len() - 2].iter().any(|l| !l.is_empty()) {
            labels[labels.len() - 2..].join(".")
        } else {
            domain.to_string()
        }
    };
    let from = second_level(&first_addr(msg, "From"));
    let env = second_level(&freemail::envelope_from(msg).unwrap_or_default());
    !from.is_empty() && !env.is_empty() && !from.eq_ignore_ascii_case(&env)
}

/// `check_from_in_list(LIST)`: a sender address (SpamAssassin's `all_from_addrs`) matches a
/// pattern of the `enlist_addrlist (LIST)` lines; `*` is any run of characters, `?` one.
pub fn from_in_list(msg: &ParsedMessage, patterns: &[String]) -> bool {
    !patterns.is_empty() && freemail::all_from_addrs(msg).iter().any(|a| patterns.iter().any(|p| wildcard(p.as_bytes(), a.as_bytes())))
}

/// Whole-text wildcard match, linear in practice (the classic backtrack-to-last-star walk).
pub(super) fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// `check_for_fake_aol_relay_in_rcvd`: an AOL relay name in a Received trail AOL did not write.
pub fn fake_aol_relay(msg: &ParsedMessage) -> bool {
    static RLY: LazyLock<Regex> = LazyLock::new(|| re(r"(?i) rly-[a-z][a-z]\d\d\."));
    static AOL: LazyLock<Regex> = LazyLock::new(|| re(r"/AOL-\d+\.\d+\.\d+\)|ESMTP id (?:RELAY|MAILRELAY|MAILIN)"));
    let rcvd = received_line(msg);
    RLY.is_match(&rcvd) && !AOL.is_match(&rcvd)
}

/// `check_ratware_name_id`: a Message-ID of 28 capitals and a dot before the address the From
/// field names in quotes.
pub fn ratware_name_id(msg: &ParsedMessage) -> bool {
    static MID: LazyLock<Regex> = LazyLock::new(|| re(r"<[A-Z]{28}\.([^>]+?)>"));
    let mid = get(msg, "MESSAGEID");
    let Some(addr) = MID.captures(&mid).map(|c| c[1].to_string()) else { return false };
    Regex::new(&format!(r#""[^"]+"\s*<{}>"#, regex::escape(&addr))).is_ok_and(|r| r.is_match(&get(msg, "from")))
}

/// `check_ratware_envelope_from`: the envelope sender reads `DOMAIN?USER@…` for the first To
/// address USER@DOMAIN (ratware building the sender from the recipient), DOMAIN reduced to its
/// registrable part; never for SRS-rewritten senders.
pub fn ratware_envelope_from(msg: &ParsedMessage) -> bool {
    static SRS: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^SRS\d[=+-]"));
    let to = msg.header_value("to", Modifier::Addr).unwrap_or_default();
    let from = msg.header_value("EnvelopeFrom", Modifier::Addr).unwrap_or_default();
    if to.is_empty() || from.is_empty() || SRS.is_match(&from) {
        return false;
    }
    let Some((user, domain)) = to.split_once('@').filter(|(u, d)| !u.is_empty() && !d.is_empty()) else { return false };
    let Some(domain) = crate::domains::registrable_domain(domain) else { return false };
    domain_then_user(&from, &domain, user)
}

/// Whether `text` holds DOMAIN, any one character, then USER@ (ASCII case ignored), DOMAIN
/// starting at a word boundary: Perl's `/\bDOMAIN.USER@/i` without compiling a regex per message.
fn domain_then_user(text: &str, domain: &str, user: &str) -> bool {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
    let at = |i: usize, s: &str| bytes.get(i..i + s.len()).is_some_and(|t| t.eq_ignore_ascii_case(s.as_bytes()));
    let Some(&first) = domain.as_bytes().first() else { return false };
    (0..bytes.len()).filter(|&i| text.is_char_boundary(i)).any(|i| {
        let boundary = word(first) != (i > 0 && word(bytes[i - 1]));
        let after = i + domain.len();
        boundary
            && at(i, domain)
            && text
                .get(after..)
                .and_then(|rest| rest.chars().next())
                .is_some_and(|c| c != '\n' && at(after + c.len_utf8(), user) && bytes.get(after + c.len_utf8() + user.len()) == Some(&b'@'))
    })
}

/// `check_for_matching_env_and_hdr_from`.
pub fn env_matches_from(msg: &ParsedMessage) -> bool {
    freemail::envelope_from(msg).unwrap_or_default().to_lowercase() == first_addr(msg, "From")
}

/// `check_header_count_range(NAME, MIN, MAX)`: distinct values of the field.
pub fn header_count(msg: &ParsedMessage, name: &str) -> usize {
    let Some(values) = msg.header_value(&name.to_ascii_lowercase(), Modifier::Decoded) else { return 0 };
    let mut distinct: Vec<&str> = values.split('\n').collect();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.len()
}

/// `check_illegal_chars(NAME, RATIO, COUNT)` over the raw bytes of the field (`ALL`: the header
/// section), unfolded.
pub fn illegal_chars(msg: &ParsedMessage, name: &str, ratio: f64, count: usize) -> bool {
    let s = raw_field_bytes(msg.full(), name);
    if !s.iter().any(|b| !b.is_ascii_whitespace()) {
        return false;
    }
    let control = |b: &u8| matches!(b, 0x00..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f);
    if s.iter().any(|b| *b >= 0x80) && std::str::from_utf8(&s).is_ok() && !s.iter().any(control) {
        return false;
    }
    let mut illegal = s.iter().filter(|b| control(b) || **b >= 0x7f).count();
    if illegal > 0 && name.eq_ignore_ascii_case("subject") && s.iter().filter(|b| matches!(b, 0xa2 | 0xa3 | 0xae)).count() == 1 {
        illegal -= 1;
    }
    illegal as f64 / s.len() as f64 >= ratio && illegal >= count
}

/// The raw bytes of every occurrence of a field (folds joined by a space), or with `ALL` the
/// whole header section, from the message as received.
fn raw_field_bytes(full: &[u8], name: &str) -> Vec<u8> {
    let end = crate::headers::header_section_end(full);
    let head = &full[..end.min(full.len())];
    if name == "ALL" {
        return head.to_vec();
    }
    let mut out = Vec::new();
    let mut inside = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if folded {
            if inside {
                while out.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    out.pop();
                }
                out.push(b' ');
                out.extend_from_slice(line.trim_ascii_start());
            }
            continue;
        }
        inside = false;
        if let Some(colon) = line.iter().position(|&b| b == b':')
            && line[..colon].trim_ascii_end().eq_ignore_ascii_case(name.as_bytes())
        {
            inside = true;
            out.extend_from_slice(line[colon + 1..].trim_ascii_start());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> ParsedMessage {
        ParsedMessage::parse(text.replace('\n', "\r\n").as_bytes())
    }

    #[test]
    fn domain_then_user_reads_as_perls_word_bounded_case_blind_pattern() {
        assert!(domain_then_user("Example.ORG-Bob@bulk.example.net", "example.org", "bob"));
        assert!(domain_then_user("x.example.org_bob@h", "example.org", "bob"), "a dot before the domain is a boundary");
        assert!(!domain_then_user("myexample.org-bob@h", "example.org", "bob"), "no boundary inside a word");
        assert!(!domain_then_user("example.orgbob@h", "example.org", "bob"), "exactly one character between");
        assert!(domain_then_user("example.org\u{e9}bob@h", "example.org", "bob"), "one character, even a multi-byte one");
        assert!(!domain_then_user("example.org\nbob@h", "example.org", "bob"), "not a newline");
        assert!(!domain_then_user("example.org-bobby@h", "example.org", "bob"));
    }

    #[test]
    fn forged_yahoo_and_hotmail_trails() {
        let forged = msg("Received: from mx.example.net by mail.example.org; Mon, 22 Jul 2002 08:06:38 -0500\nFrom: joe@yahoo.com\n\nx\n");
        assert!(forged_yahoo(&forged));
        let real = msg("Received: from web1.mail.yahoo.com by web1.mail.yahoo.com via HTTP; Mon, 22 Jul 2002\nFrom: joe@yahoo.com\n\nx\n");
        assert!(!forged_yahoo(&real));
        assert!(!forged_yahoo(&msg("From: joe@yahoo.com\n\nx\n")), "no Received trail at all");
        let hot = msg("Received: from mx.example.net by mail.example.org; Mon, 22 Jul 2002\nFrom: joe@hotmail.com\n\nx\n");
        assert_eq!(forged_hotmail(&hot), (false, true));
        let named = msg("Received: from hotmail.com (mx.example.net [192.0.2.1]) by x\nFrom: joe@example.com\n\nx\n");
        assert_eq!(forged_hotmail(&named), (true, false));
    }

    #[test]
    fn recipients_sorted_and_similar() {
        let to: Vec<String> = ["aa1", "aa2", "aa3", "aa4", "aa5", "aa6", "aa7"].iter().map(|u| format!("{u}@example.net")).collect();
        let m = msg(&format!("To: {}\nSubject: x\n\nx\n", to.join(", ")));
        assert!(sorted_recipients(&m));
        assert!(recipient_similarity(&m) >= 0.65);
        assert_eq!(recipient_similarity(&msg("To: a@x.test\n\nx\n")), 0.0);
    }

    #[test]
    fn illegal_bytes_counts_and_templates() {
        let latin1 = b"From: J\xf6rg \xdcber <j@x.test>\r\nSubject: x\r\n\r\nbody\r\n";
        assert!(illegal_chars(&ParsedMessage::parse(latin1), "From", 0.05, 2));
        let utf8 = "From: Jörg Über <j@x.test>\r\nSubject: x\r\n\r\nbody\r\n";
        assert!(!illegal_chars(&ParsedMessage::parse(utf8.as_bytes()), "From", 0.0, 1), "valid UTF-8");
        assert!(unresolved_template(&msg("X-Campaign: %CUSTOMER_ID\nSubject: x\n\nx\n")));
        assert!(!unresolved_template(&msg("Subject: %NAME\n\nx\n")));
        assert_eq!(header_count(&msg("Subject: a\nSubject: b\nSubject: a\n\nx\n"), "Subject"), 2);
        assert!(missing_to(&msg("Subject: a\n\nx\n")));
        assert!(to_in_subject(&msg("To: bob@x.test\nSubject: Re: bob\n\nx\n"), true));
        assert!(wildcard(b"*@*.paypal.com", b"service@mail.paypal.com"));
        assert!(fake_aol_relay(&msg("Received: from rly-xa01.mx.aol.com (x [192.0.2.1]) by y\n\nx\n")));
        assert!(!fake_aol_relay(&msg("Received: from rly-xa01.mx.aol.com by y (8.8.8/AOL-1.2.3)\n\nx\n")));
        let mid = "<ABCDEFGHIJKLMNOPQRSTUVWXYZAB.joe@x.test>";
        assert!(ratware_name_id(&msg(&format!("Message-ID: {mid}\nFrom: \"Joe\" <joe@x.test>\n\nx\n"))));
        assert!(!wildcard(b"*@paypal.com", b"x@paypal.com.evil.test"));
        assert!(wildcard(b"a?c*", b"abcdef") && !wildcard(b"a?c", b"ac"));
        let lists = vec!["*@*.top".to_string()];
        assert!(from_in_list(&msg("From: x@shop.top\n\nx\n"), &lists));
        assert!(!from_in_list(&msg("From: x@shop.test\n\nx\n"), &lists));
        assert!(!to_in_subject(&msg("To: bob@x.test\nSubject: about bobcats\n\nx\n"), true));
        assert!(to_in_subject(&msg("To: bob@x.test\nSubject: FW: hello bob\n\nx\n"), true));
        assert!(to_in_subject(&msg("To: bob@x.test\nSubject: bob, your offer\n\nx\n"), true));
        assert!(!to_in_subject(&msg("To: bob@x.test\nSubject: Bob, your offer\n\nx\n"), true), "that form is case-sensitive");
        assert!(to_in_subject(&msg("To: bob@x.test\nSubject: , BOB!\n\nx\n"), true));
        assert!(to_in_subject(&msg("To: bob@x.test\nSubject: mail for Bob@X.test now\n\nx\n"), false));
        assert!(!to_in_subject(&msg("To: bob@x.test\nSubject: mail for bob@x.tester\n\nx\n"), false));
    }
}
