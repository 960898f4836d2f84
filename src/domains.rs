//! Domain names: the registrable part of a host name (what a URI list, a reverse-DNS check or
//! SpamAssassin's relay matching compares), from a small built-in suffix list.
//!
//! Guarantees: pure and bounded (names over 253 bytes, IP addresses and single labels give
//! none); under a two-level suffix it does not know, a name keeps only its last two labels.

/// Second-level labels under which registrations happen at the third level (`x.co.uk`). A small,
/// built-in subset of the Public Suffix List: enough for the common cases, not all of them. A
/// domain under a suffix missing here is reduced to its last two labels (`co.xx`), which a URI
/// list simply does not list, so the cost is a missed hit, never a false one.
const TWO_LEVEL_SUFFIXES: &[&str] = &[
    "ac.uk", "co.uk", "gov.uk", "ltd.uk", "me.uk", "net.uk", "nhs.uk", "org.uk", "plc.uk", "sch.uk", "com.au", "net.au", "org.au",
    "edu.au", "gov.au", "asn.au", "id.au", "co.nz", "net.nz", "org.nz", "ac.nz", "govt.nz", "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp",
    "ad.jp", "gr.jp", "co.kr", "or.kr", "ne.kr", "co.in", "net.in", "org.in", "firm.in", "gen.in", "ind.in", "co.za", "org.za", "net.za",
    "web.za", "co.il", "org.il", "net.il", "ac.il", "com.br", "net.br", "org.br", "com.ar", "com.mx", "com.co", "com.pe", "com.ve",
    "com.uy", "com.cn", "net.cn", "org.cn", "gov.cn", "com.hk", "com.tw", "com.sg", "com.my", "com.ph", "com.vn", "com.pk", "com.bd",
    "com.tr", "com.ua", "com.ru", "com.pl", "com.eg", "com.sa", "com.ng", "co.id", "or.id", "co.th", "in.th", "co.ke", "co.tz", "co.ug",
    "com.gh",
];

/// The registrable domain of a host name ("mail.example.co.uk" → "example.co.uk",
/// "a.b.example.com" → "example.com"): the last two labels, or three under one of the built-in
/// [`TWO_LEVEL_SUFFIXES`]. `None` for names that are not plausible DNS names, IP addresses and
/// single labels.
pub fn registrable_domain(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let plausible = host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let labels: Vec<&str> = host.split('.').collect();
    let top = labels.last()?;
    if !plausible || labels.len() < 2 || top.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let last_two = labels[labels.len() - 2..].join(".");
    let keep = if TWO_LEVEL_SUFFIXES.contains(&last_two.as_str()) { 3 } else { 2 };
    if labels.len() < keep {
        return None;
    }
    Some(labels[labels.len() - keep..].join("."))
}
