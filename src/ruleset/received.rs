//! SpamAssassin's reading of the `Received:` trail: each field parsed into a relay (IP, reverse
//! DNS, HELO, `by` host, ident, envelope sender, id, authentication), the trail split into
//! trusted and untrusted, internal and external relays, and the pseudo-headers the stock rules
//! read: `X-Spam-Relays-Trusted`, `-Untrusted`, `-Internal`, `-External`, each relay written
//! `[ ip=… rdns=… helo=… by=… ident=… envfrom=… intl=… id=… auth=… msa=… ]`, space-separated,
//! newest first.
//!
//! Semantics follow `Mail::SpamAssassin::Message::Metadata::Received` (SpamAssassin 4.0), our
//! own code: the same formats recognised in the same order (Postfix, Sendmail, Exim, qmail,
//! qpsmtpd, Microsoft SMTPSVC and Exchange, Courier, CommuniGate, MDaemon, XMail, …), the same
//! fields skipped (local handovers, `with local`, fetchmail/getmail markers restart the trusted
//! list) and the same inference of the trust boundary when no `trusted_networks` are configured
//! (moat has none): a relay is trusted while every relay so far came from a private address or
//! authenticated; trusted relays are also internal.
//!
//! moat as a server adds one more, newest, handover: the connection it received the message on.
//! A client on a public address is therefore untrusted and ends the trusted part before any
//! field of the message is read ([`ConnectionTrust::Public`]); a private client keeps the
//! trust going into the message's own fields, as SpamAssassin behind moat would infer from
//! moat's Received field. A loopback client, and `moat scan` of a file, infer from the
//! message's fields alone. The connection is not written into the pseudo-headers because moat
//! does not record the client's reverse-DNS name, and an empty `rdns=` would read as "no
//! reverse DNS" to RDNS_NONE and its kin (moat's own rdns filter judges the connection).
//!
//! Cost: a pattern runs (bounded backtracking) only on a text that holds one of the literals its
//! every match needs ([`Gate`]); most of the patterns tried on a field are ruled out that way.
//!
//! Bounded: at most [`MAX_RECEIVED`] fields, each cut at [`MAX_FIELD`] bytes. Never panics.

use std::net::IpAddr;
use std::sync::LazyLock;

use fancy_regex::Regex;

use super::compile::Backtracking;
use super::literals::LiteralSet;

/// Received fields read at most (SpamAssassin has no bound; real trails have a dozen).
pub const MAX_RECEIVED: usize = 64;
/// Bytes of one Received field read at most.
pub const MAX_FIELD: usize = 2048;

/// One parsed handover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relay {
    pub ip: String,
    pub rdns: String,
    pub helo: String,
    pub by: String,
    pub ident: String,
    pub envfrom: String,
    pub id: String,
    pub auth: String,
    /// The receiving MTA recorded that it looked the name up and found none.
    pub no_reverse_dns: bool,
    pub ip_private: bool,
    pub internal: bool,
}

impl Relay {
    /// SpamAssassin's `as_string` form.
    pub fn as_string(&self) -> String {
        format!(
            "[ ip={} rdns={} helo={} by={} ident={} envfrom={} intl={} id={} auth={} msa=0 ]",
            self.ip,
            self.rdns,
            self.helo,
            self.by,
            self.ident,
            self.envfrom,
            u8::from(self.internal),
            self.id,
            self.auth
        )
    }
}

/// What one Received field gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Relay(Relay),
    /// A handover known to carry nothing useful (local delivery, a scanner's note).
    Skip,
    /// A mail fetcher's field (POP3/IMAP): the trail before it is another mailbox's.
    Fetcher,
    Unparseable,
}

/// How the connection moat received the message on bears on trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionTrust {
    /// No connection (a file), or a loopback client: infer from the message's fields alone.
    #[default]
    Unknown,
    /// A client on a private address: trusted, the inference goes on into the message.
    Private,
    /// A client on a public address: untrusted, so is every relay the message records.
    Public,
}

impl ConnectionTrust {
    /// The trust a client at `ip` gets.
    pub fn of(ip: IpAddr) -> ConnectionTrust {
        if ip.is_loopback() || ip.to_canonical().is_loopback() {
            ConnectionTrust::Unknown
        } else if is_private(&ip.to_canonical().to_string()) {
            ConnectionTrust::Private
        } else {
            ConnectionTrust::Public
        }
    }
}

/// The trail, split as SpamAssassin splits it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relays {
    pub trusted: Vec<Relay>,
    pub untrusted: Vec<Relay>,
    pub internal: Vec<Relay>,
    pub external: Vec<Relay>,
    pub unparseable: usize,
    /// The connection (a private client) is one more trusted relay, counted but not written.
    pub connection_trusted: bool,
    /// The connection (a public client) is one more untrusted relay, counted but not written.
    pub connection_untrusted: bool,
}

impl Relays {
    /// Reads the Received fields (newest first, as in the message, folding kept or not).
    pub fn infer<'a>(received: impl IntoIterator<Item = &'a str>, connection: ConnectionTrust) -> Relays {
        let mut out = Relays::default();
        let mut in_trusted = connection != ConnectionTrust::Public;
        let mut allow_fetch_markers = in_trusted;
        out.connection_trusted = connection == ConnectionTrust::Private;
        out.connection_untrusted = connection == ConnectionTrust::Public;
        for field in received.into_iter().take(MAX_RECEIVED) {
            let field = cut(field, MAX_FIELD);
            let mut relay = match parse_line(field) {
                Parsed::Relay(r) => r,
                Parsed::Unparseable => {
                    out.unparseable += 1;
                    continue;
                }
                Parsed::Skip => continue,
                Parsed::Fetcher => {
                    if allow_fetch_markers {
                        out.trusted.clear();
                        out.internal.clear();
                        out.external.clear();
                    }
                    continue;
                }
            };
            if in_trusted && !relay.ip_private && relay.auth.is_empty() {
                in_trusted = false;
            }
            relay.internal = in_trusted;
            allow_fetch_markers = in_trusted;
            if in_trusted {
                out.trusted.push(relay.clone());
                out.internal.push(relay);
            } else {
                out.untrusted.push(relay.clone());
                out.external.push(relay);
            }
        }
        out
    }

    /// Trusted relays, the connection included.
    pub fn num_trusted(&self) -> usize {
        self.trusted.len() + usize::from(self.connection_trusted)
    }

    /// The pseudo-header `X-Spam-Relays-<which>` (Trusted, Untrusted, Internal, External).
    pub fn pseudo_header(&self, which: &str) -> Option<String> {
        let list = match which {
            "Trusted" => &self.trusted,
            "Untrusted" => &self.untrusted,
            "Internal" => &self.internal,
            "External" => &self.external,
            _ => return None,
        };
        Some(list.iter().map(Relay::as_string).collect::<Vec<_>>().join(" "))
    }
}

/// RelayEval's functions over the relays.
impl Relays {
    /// `check_all_trusted()`: trusted relays only, none unparseable.
    pub fn all_trusted(&self) -> bool {
        self.num_trusted() > 0 && self.untrusted.is_empty() && !self.connection_untrusted && self.unparseable == 0
    }

    /// `check_no_relays()`.
    pub fn no_relays(&self) -> bool {
        self.num_trusted() == 0 && self.untrusted.is_empty() && !self.connection_untrusted && self.unparseable == 0
    }

    /// `helo_ip_mismatch()`: an untrusted relay said HELO with a public IPv4 address that is
    /// not its own, nor in its /24.
    pub fn helo_ip_mismatch(&self) -> bool {
        self.untrusted.iter().any(|r| {
            if !is_ipv4(&r.helo) || is_private(&r.helo) {
                return false;
            }
            let net = match r.helo.rfind('.') {
                Some(i) => &r.helo[..=i],
                None => return false,
            };
            is_ipv4(&r.ip) && !is_private(&r.ip) && r.helo != r.ip && !r.ip.starts_with(net)
        })
    }

    /// `check_for_no_rdns_dotcom_helo()`: the oldest public untrusted relay said HELO as a big
    /// free mail provider and its receiver found no reverse DNS (SpamAssassin resets the finding
    /// at each relay, so the last one looked at decides).
    pub fn no_rdns_dotcom_helo(&self) -> bool {
        static DOTCOM: LazyLock<Regex> = LazyLock::new(|| {
            re(
                r"(?i)(?:\.|^)(lycos\.com|lycos\.co\.uk|hotmail\.com|localhost\.com|excite\.com|caramail\.com|cs\.com|aol\.com|msn\.com|yahoo\.com|drizzle\.com)$",
            )
        });
        let mut dotcom = false;
        for r in self.untrusted.iter().filter(|r| !r.ip_private) {
            dotcom = found(&DOTCOM, &r.helo) && r.no_reverse_dns;
        }
        dotcom
    }

    /// `check_for_forged_received_trail()`: more than one untrusted relay whose `by` host is
    /// not in the domain the next (older) relay's reverse DNS names.
    pub fn forged_received_trail(&self) -> bool {
        static HOST: LazyLock<Regex> = LazyLock::new(|| re(r"^\w+(?:[\w.-]+\.)+\w+$"));
        let by: Vec<String> = self.untrusted.iter().map(|r| hostname_to_domain(&r.by.to_lowercase())).collect();
        let mut from: Vec<Option<String>> = self.untrusted.iter().map(|r| Some(hostname_to_domain(&r.rdns.to_lowercase()))).collect();
        let mut mismatches = 0;
        for (i, r) in self.untrusted.iter().enumerate() {
            if !found(&HOST, &by[i]) {
                continue;
            }
            if from[i].as_deref().is_some_and(|d| d == "localhost" || d == "localhost.localdomain") && r.ip == "127.0.0.1" {
                from[i] = None;
            }
            if i == 0 {
                continue;
            }
            if let Some(prev) = &from[i - 1]
                && found(&HOST, prev)
                && by[i] != *prev
                && !(by[i] == "msn.com" && prev == "hotmail.com")
            {
                mismatches += 1;
            }
        }
        mismatches > 1
    }
}

impl Relays {
    /// WLBLEval's `_check_addr_matches_rcvd`: the address's registrable domain is that of the
    /// first untrusted relay's reverse-DNS name, or (no untrusted relay) of a trusted one's.
    pub fn addr_matches_rcvd(&self, addr: &str, registrable: impl Fn(&str) -> Option<String>) -> bool {
        let Some((_, domain)) = addr.rsplit_once('@') else { return false };
        if !domain.char_indices().any(|(i, c)| c == '.' && i > 0 && i + 1 < domain.len()) {
            return false;
        }
        let domain = domain.to_lowercase();
        let relays: &[Relay] = match self.untrusted.first() {
            Some(first) => std::slice::from_ref(first),
            None => &self.trusted,
        };
        let of = |host: &str| registrable(host).unwrap_or_else(|| host.to_string());
        let wanted = of(&domain);
        relays.iter().filter(|r| !r.rdns.is_empty()).any(|r| of(&r.rdns.to_lowercase()) == wanted)
    }
}

/// RelayEval's `hostname_to_domain`: the last two labels (three under a two-letter TLD other
/// than ie, fr, de); an IP address as it is.
fn hostname_to_domain(host: &str) -> String {
    if !host.chars().any(|c| c.is_ascii_alphabetic()) {
        return host.to_string();
    }
    let parts: Vec<&str> = host.split('.').collect();
    let last = parts.last().copied().unwrap_or("");
    // Perl's /(?:\S{3,}|ie|fr|de)/ is unanchored: three non-space characters anywhere, or
    // ie, fr, de inside the label.
    let long = last.chars().filter(|c| !c.is_whitespace()).count() >= 3 || ["ie", "fr", "de"].iter().any(|t| last.contains(t));
    if parts.len() > 1 && long {
        parts[parts.len() - 2..].join(".")
    } else if parts.len() > 2 {
        parts[parts.len() - 3..].join(".")
    } else {
        host.to_string()
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// An IPv4 or IPv6 address (with an optional `IPv6:` prefix), as SpamAssassin's IP_ADDRESS.
const IP: &str = r"(?:\b(?<!:)(?:(?:1\d\d|2[0-4]\d|25[0-5]|[1-9]\d|\d)\.){3}(?:1\d\d|2[0-4]\d|25[0-5]|[1-9]\d|\d)\b|(?:IPv6:|(?<![a-fA-F0-9:]))(?:[a-fA-F0-9]{0,4}:){2,7}(?:(?:(?:1\d\d|2[0-4]\d|25[0-5]|[1-9]\d|\d)\.){3}(?:1\d\d|2[0-4]\d|25[0-5]|[1-9]\d|\d)|[a-fA-F0-9]{1,4})?(?![a-fA-F0-9:]))";
const LOCALHOST: &str =
    r"(?:localhost(?:\.localdomain)?|\b(?<!:)127\.0\.0\.1\b|(?:IPv6:|(?<![a-fA-F0-9:]))(?:0{0,4}:){2,7}0{0,3}1(?![a-fA-F0-9:]))";

/// A pattern's source with `{IP}` and `{LOCALHOST}` expanded.
fn expand(p: &str) -> String {
    p.replace("{IP}", IP).replace("{LOCALHOST}", LOCALHOST)
}

/// A compiled pattern ([`expand`]ed). Compiled like the rules' backtracking patterns and
/// searched on the field's bytes: ASCII classes as Perl has them on octets (and a fraction of
/// the memory of Unicode ones), bounded backtracking.
fn re(p: &str) -> Regex {
    let p = expand(p);
    Backtracking::build(&p).unwrap_or_else(|e| panic!("received pattern {p:?}: {e}"))
}

/// Which patterns can match a text, from literals: each pattern's superset (the pattern with its
/// lookarounds dropped, as `perlre` gives it for the rules' backtracking patterns) needs one of a
/// literal of each of a few sets (`literals::study`), so a text without them is not tried against the
/// backtracking pattern at all. A field is tried against up to ~100 patterns in SpamAssassin's
/// order and most of them fail; a pattern ruled out this way cannot match, so the parse is the
/// same.
struct Gate {
    /// Per pattern: the literal sets (lower-cased) a match contains a literal of each of; none:
    /// always tried.
    required: Vec<Vec<LiteralSet>>,
}

static GATE: LazyLock<Gate> = LazyLock::new(Gate::build);

impl Gate {
    fn build() -> Gate {
        let required = SOURCES
            .iter()
            .map(|p| super::perlre::translate(&expand(p), "").map_or(Vec::new(), |t| super::literals::study(&t.superset).required))
            .collect();
        Gate { required }
    }
}

/// A text the patterns are tried on, lower-cased on first use for the gate.
struct Text<'a> {
    text: &'a str,
    lower: std::cell::OnceCell<Vec<u8>>,
}

impl<'a> Text<'a> {
    fn new(text: &'a str) -> Text<'a> {
        Text { text, lower: std::cell::OnceCell::new() }
    }

    /// False only when `p` cannot match this text.
    fn may_match(&self, p: &Pat) -> bool {
        let Some(required) = GATE.required.get(p.index).filter(|sets| !sets.is_empty()) else { return true };
        let lower = self.lower.get_or_init(|| self.text.as_bytes().to_ascii_lowercase());
        required.iter().all(|set| set.iter().any(|l| memchr::memmem::find(lower, l).is_some()))
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        self.text
    }
}

/// Groups of `p`'s first match in `t`, "" for groups that did not take part.
fn caps(p: &Pat, t: &Text) -> Option<Vec<String>> {
    if !t.may_match(p) {
        return None;
    }
    let c = p.regex.captures(t.as_bytes()).ok()??;
    Some((0..c.len()).map(|i| c.get(i).map_or(String::new(), |m| String::from_utf8_lossy(m.as_bytes()).into_owned())).collect())
}

fn is(p: &Pat, t: &Text) -> bool {
    t.may_match(p) && found(&p.regex, t)
}

fn found(r: &Regex, s: &str) -> bool {
    r.is_match(s.as_bytes()).unwrap_or(false)
}

/// Where `p`'s first match in `t` starts, when it starts at a character boundary (every
/// pattern searched this way starts with an ASCII byte).
fn match_start(p: &Pat, t: &Text) -> Option<usize> {
    if !t.may_match(p) {
        return None;
    }
    let m = p.regex.find(t.as_bytes()).ok()??;
    t.is_char_boundary(m.start()).then_some(m.start())
}

/// One of the parser's patterns: compiled on first use, and its place in [`GATE`].
struct Pat {
    index: usize,
    regex: LazyLock<Regex>,
}

/// Declares the parser's patterns: one [`Pat`] static each, and [`SOURCES`] in the same order.
macro_rules! patterns {
    ($($name:ident = $p:expr;)*) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[repr(usize)]
        enum Index { $($name),* }
        /// Every pattern's source, at its [`Pat::index`].
        const SOURCES: &[&str] = &[$($p),*];
        $(static $name: Pat = Pat { index: Index::$name as usize, regex: LazyLock::new(|| re($p)) };)*
        /// Every pattern (tests).
        #[cfg(test)]
        static ALL: &[&Pat] = &[$(&$name),*];
    };
}

patterns! {
    FROM_START = r"(?i)^\(?from ";
    WITH_LOCAL_FOR = r"\bwith local for\b";
    FROM_BY_SEMI = r"(?i)^from (\S+) by [^\s;]+ ?;";
    BRACKET_V4 = r"^\[[\d.]+\]$";
    DATE_TAIL = r"[\s;]+(?:(?:Mon|T(?:ue|hu)|Wed|Fri|S(?:at|un)), )?\d+ (?:J(?:an|u[nl])|Feb|Ma[ry]|A(?:pr|ug)|Sep|Oct|Nov|Dec) \d+ \d+:\d+(?::\d+)? \S+$";
    ID = r" id <?([^\s<>;]{3,})";
    HELO_EQ = r"\bhelo=([-A-Za-z0-9\.\^+_&:=?!@%*\$\\/]+)(?:[^-A-Za-z0-9\.\^+_&:=?!@%*\$\\/]|$)";
    HELO_WORD = r"\b(?:HELO|EHLO) ([-A-Za-z0-9\.\^+_&:=?!@%*\$\\/]+)(?:[^-A-Za-z0-9\.\^+_&:=?!@%*\$\\/]|$)";
    BY = r" by (\S+)(?:[^-A-Za-z0-9;\.]|$)";
    HAS_BY = r" by ";
    AUTH_WITH = r"(?i) with ((?:ES|L|UTF8S|UTF8L)MTPS?A|ASMTP|HTTP[SU]?)(?: |;|$)";
    AUTH_GMAIL = r" by mx\.google\.com with ESMTPS id [a-z0-9]{1,4}sm[0-9]{2,9}[a-z]{3}\.[0-9]{1,3}\.[0-9]{4}\.(?:[0-6][0-9]\.){4}[0-6][0-9]";
    AUTH_GMAIL_TLS = r"\(version=([^ ]+) cipher=([^\)]+)\)";
    AUTH_COURIER = r"^from .*?(?:\]\)|\)\]) \(AUTH: (LOGIN|PLAIN|DIGEST-MD5|CRAM-MD5) \S+(?:, .*?)?\) by ";
    AUTHENTICATED = r"authenticated";
    AUTH_SENDMAIL = r"^from .*?(?:\](?: \([^)]*\))?\)|\)\]) .*?\(.*?authenticated.*?\).*? by";
    AUTH_GMX = r"from \S* \((?:HELO|EHLO) (\S*)\) \[({IP})\] by (mail\.gmx\.(?:net|com)) \([^\)]+\) with ((?:ESMTP|SMTP))";
    AUTH_CP1 = r" \(authenticated as ";
    AUTH_CP2 = r"\) by .+ \(\d{1,2}\.\d\.\d{3}(?:\.\d{1,3})?\) \(authenticated as .+\) id ";
    AUTH_POSTFIX = r"\) \(Authenticated sender: \S+\) by \S+ \(([^\)]+)\) with ";
    AUTH_CGP1 = r"CommuniGate Pro (HTTP|SMTP|XIMSS|IMAP)";
    AUTH_CGP2 = r" \(account ";
    AUTH_DAV = r" with Microsoft Exchange Server HTTP-DAV\b";
    AUTH_VIA_HTTP = r"(?i) \(via (HTTP.?)\)(?: |;|$)";
    ENVFROM = r"(?i)(?:return-path:? |envelope-(?:sender|from)[ =])(\S+)\b";
    SQUIRREL = r" \((?:SquirrelMail|NaSMail) authenticated user ";
    SQUIRREL_IP = r"({IP})\b(?![.-]).{10,80}by (\S+) with HTTP";
    AOL_DOM = r"aol\.com";
    AOL_WEBMAIL = r"with HTTP \(WebMailUI\)";
    AOL_WEBMAIL_IP = r"({IP}) by (\S+) \({IP}\) with HTTP \(WebMailUI\)";
    SMTPSVC = r" SMTPSVC";
    SMTPSVC_1 = r"^(\S*) \(\[({IP})\][^\)]{0,40}\) by (\S+) with Microsoft SMTPSVC";
    SMTPSVC_PICKUP = r"^mail pickup service by (\S+) with Microsoft SMTPSVC$";
    MS_SMTP = r" with (?:Microsoft SMTP Server|mapi id) (?:\([^\)]+\) )?\d+\.\d+\.\d+\.\d+(?:$| )";
    MS_SMTP_1 = r"^(\S+) \(\[?({IP})(?:%[A-Za-z0-9._~-]*)?\]?\) by (\S+) ";
    XMAIL = r"\[XMail ";
    XMAIL_1 = r"^(\S+) \((\[?{IP}\]?)(?::\d+)\) by (\S+)(?: \(\S+\))? with \[XMail";
    XMAIL_ID = r" id <(\S+)>";
    XMAIL_FROM = r" from <(\S+)>";
    ECELERITY = r"\(ecelerity\b";
    ECELERITY_1 = r"^\(\[({IP}):\d+\] helo=(\S+)\) by (\S+) ";
    ECELERITY_2 = r"^\S+ \(\[({IP}):\d+\]\) by (\S+) ";
    EXIM = r"Exim";
    EXIM_LOCAL = r"\bwith local(?:-\S+)? ";
    EXIM_1 = r"^\[({IP})\] \((.*?)\) by (\S+) ";
    EXIM_2 = r"^(\S+) \(\[({IP})\](.*?)\) by (\S+) ";
    EXIM_3 = r"^(\S+) \[({IP})\](:\d+)? by (\S+) ";
    EXIM_4A = r"^(\S+) ";
    EXIM_4B = r" \((\S+)\) ";
    EXIM_4C = r" \[({IP})(?:\.\d+)?\] ";
    EXIM_4D = r"by (\S+) ";
    SUB_HELO = r"helo=(\S+)";
    SUB_IDENT = r"ident=(\S*)";
    POSTFIX = r" \(Postfix\) with";
    POSTFIX_1 = r"^(\S+) \((\S+) \[({IP})\]\) by (\S+) ";
    POSTFIX_2 = r"^(\S+) \((\S+)\[({IP})\]\) by (\S+) ";
    SCALIX = r"\(Scalix SMTP Relay";
    SCALIX_1 = r"^(\S+) \( ?({IP})\) by (\S+)";
    DOMINO = r" \(Lotus Domino ";
    DOMINO_1 = r"^(\S+) \(\[({IP})\]\) by (\S+) \(Lotus";
    WITH_HTTP = r"\bwith HTTP\b";
    HTTP_1 = r"^({IP}) \(\[{IP}\]\) by (\S+)";
    QMAIL_LDAP = r" by \S+ \(qmail-\S+\) with ";
    SENDMAIL_1 = r"^(\S+) \((\S+) \[({IP})\].*\) by (\S+) \(";
    IDENT_PREFIX = r"^IDENT:([^@]*)@";
    IDENT_AT = r"^([^@]*)@";
    EXCH55 = r"^(\S+) \((\S+) \[({IP})\]\) by (\S+) with \S+ \(";
    HELO_EQ_BY = r"^(\S+) \(\[({IP})\] helo=(\S+)\) by (\S+) with ";
    UNKNOWN_DOMAIN = r"^(\S+) \(<unknown\S*>\[({IP})\]\) by (\S+) ";
    ATTBI = r"^(\S+) \((\S+\.\S+)\[({IP})\]\) by (\S+) ";
    IDENT_BRACKET = r"^(\S+) \((\S*)@\[({IP})\].*\) by (\S+) \(";
    HOTMAIL = r"by (\S+\.hotmail\.msn\.com) ";
    LEADING_IP = r"^({IP}) ";
    QPSMTPD = r"^(\S+) \((?:HELO|EHLO) (\S*)\) \(({IP})\) by (\S+) \(qpsmtpd/\S+\) with (?:ESMTP|SMTP)";
    LMTP = r"^(\S+) \(LHLO (\S*)\) \(({IP})\) by (\S+) with LMTP";
    GMX = r"^(\S+) \((?:HELO|EHLO) (\S*)\) \[({IP})\] by (\S+) \([^\)]+\) with (?:ESMTP|SMTP)";
    AOL_SMTPD = r"^(\S+) \(\[({IP})\]\) by (\S+) via smtpd \(for \S+\) with SMTP\(";
    QMAIL = r"^\S+( \((?:HELO|EHLO) \S*\))? \((\S+@)?\[?{IP}\]?\)( \(envelope-sender <\S+>\))? by \S+( \(.+\))* with (.* )?(SMTP|QMQP)(?! id )";
    QMAIL_1 = r"^(\S+) \((?:HELO|EHLO) ([^ \(\)]*)\) \((\S*)@\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)";
    QMAIL_2 = r"^(\S+) \((?:HELO|EHLO) ([^ \(\)]*)\) \(\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)";
    QMAIL_3 = r"^(\S+) \((\S*)@\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)";
    QMAIL_4 = r"^(\S+) \(\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)";
    VIA_HTTP_END = r" via HTTP$";
    YAHOO_HTTP = r"^\[({IP})\] by (\S+) via HTTP$";
    SPACE_BRACKET = r"^(\S+) \( \[({IP})\]\).*? by (\S+) ";
    PAREN_IP_IP = r"^\((\S+) \[({IP})\]\) by (\S+) ";
    BRACKET_BY = r"^\[({IP})\] by (\S+) ";
    PAREN_IP_BY = r"^\(\[?({IP})\]?\) by (\S+) ";
    MDAEMON_1 = r"^(\S+) \[({IP})\] by (\S+) \[{IP}\] with ";
    MDAEMON_2 = r"^(\S+) \[\(({IP})\)\] by (\S+) \({IP}\) ";
    SENDMAIL_2 = r"^(\S+) \(\[({IP})\]\) by (\S+) \(";
    SENDMAIL_3 = r"^(\S+) \((\S+) \[({IP})\]\).*? by (\S+)\b";
    SENDMAIL_4 = r"^(\S+) \(\[({IP})(?:[.:]\d+)?\]\).*? by (\S+) ";
    SENDMAIL_5 = r"^(\S+) \((\S+) \[({IP})\]\)(?: \(authenticated bits=\d+\))? by (\S+) \(";
    FETCHER = r"with (?:POP3|IMAP)";
    QMAILISH_1 = r"^(\S+) \((?:HELO|EHLO) ([^\)]*)\) \((\S*@)?\[?({IP})\]?\).* by (\S+) ";
    QMAILISH_2 = r"^(\S+) \((\S*@)?\[?({IP})\]?\).* by (\S+) ";
    WITH_HTTP_FOR = r" with http for ";
    OUTBLAZE = r"^\[({IP})\] by (\S+) with http for ";
    VIA_SMAP = r" via smap ";
    SMAP_1 = r"^(\S+)\(({IP})\) by (\S+) via smap ";
    SMAP_2 = r"^(\S+)\(({IP}), (?:HELO|EHLO) (\S*)\) by (\S+) via smap ";
    POST_OFFICE = r" \(Post";
    POST_OFFICE_1 = r"^\[({IP})\] by (\S+) \(Post";
    ARGOSOFT = r" \(ArGoSoft";
    ARGOSOFT_1 = r"^\[({IP})\] by (\S+) \(ArGoSoft";
    INTERSCAN = r"^({IP}) by (\S+) \((?:SMTPL|InterScan)\b";
    BSMTP = r" with BSMTP";
    BSMTP_1 = r"^\S+ by \S+ with BSMTP";
    SPIKE = r"^(\S+) \((\S+) \[({IP})\]\) by (\S+) with ";
    YAHOO_IDENT = r"^(\S+) \((?:HELO|EHLO) (\S*)\) \((?:(\S+)@)?({IP}).*?\) by (\S+) with ";
    CGP_1 = r"^\[({IP})\] \((?:account \S+ )?(?:HELO|EHLO) (\S*)\) by (\S+) \(";
    CGP_PRO = r" \(CommuniGate Pro";
    CGP_2 = r"^(\S+) \(\[({IP})\] verified\) by (\S+) \(";
    CIPHERTRUST = r"^\(\[({IP})\]\) by (\S+) with ";
    IRONPORT = r"^([^\d]\S+) \(({IP})\) by (\S+) ";
    CONTENT_TECH = r"^\S+ \(\S+\) by \S+ \(Content Technologies ";
    BLS = r"^(\S+) \(\[({IP})\] \[(\S+)\]\) by (\S+) with ";
    TUMBLEWEED = r"^({IP}) by (\S+) with ";
    POBOX = r"^(\S+) \((\S+)\[({IP})\]\) by (\S+) ";
    FSECURE = r"^\[({IP})\]\S+ \((?:HELO|EHLO) (\S*)\) by (\S+) ";
    ALTAVISTA = r"^({IP}) \((?:HELO|EHLO) (\S*)\) by (\S+) ";
    OEM = r"^(\S+) \[({IP})\] by (\S+) ";
    CSMAP = r"^(\S+)\(({IP})\) by (\S+) ";
    MAILGATE = r"^\[({IP})\] by (\S+) \(MailGate ";
    UNVERIFIED = r"^(\S+) \(unverified \[({IP})\]\) by (\S+) ";
    PROXYING = r"^({IP}) \([A-Za-z][^\)]+\) by (\S+) with ";
    BRACKET_SUB = r"^\[({IP})\] \(([^\)]+)\) by (\S+) ";
    KDE = r"^(\S+) \((?:\S+@)?({IP})\) by (\S+) with ";
    OBTUSE = r#"^(\S+)\(({IP})\)(?:, claiming to be "(\S+)")? via \S+ by (\S+),"#;
    YAHOO_LOGIN = r"^(\S+) \((\S+)@({IP}) with login\) by (\S+\.yahoo\.com) with SMTP";
    ORIG_IP = r"^X-Originating-IP: ({IP})$";
    IGN_1 = r"^\S+ \([^\s@]+@{LOCALHOST}\) by \S+ \(";
    IGN_2 = r"^\S+ \S+ by \S+ with local-e?smtp ";
    IGN_3 = r"^127\.0\.0\.1 \(AVG SMTP \S+ \[\S+\]\)";
    IGN_4 = r"^\S+@\S+ by \S+ by uid \S+ ";
    IGN_5 = r"^\S+@\S+ by \S+ ";
    IGN_6 = r"^Unknown/Local \(";
    IGN_7 = r"^{LOCALHOST} \((?:\S+@)?{LOCALHOST}[\)\[]";
    IGN_8 = r"^\S+ \((?:\S+@)?{LOCALHOST}\) ";
    IGN_9 = r"^\S+ \(\S+@\S+ \[{LOCALHOST}\]\) ";
    IGN_10 = r"^\(AUTH: \S+\) by \S+ with ";
    IGN_11 = r"^localhost \(localhost \[\[UNIX: localhost\]\]\) by ";
    IGN_12 = r"^\S+\.amazon\.com by \S+\.amazon\.com with ESMTP \(peer crosscheck: ";
    IGN_13 = r"^[^\.]+ by \S+ with Novell_GroupWise";
    IGN_14 = r"^no\.name\.available by \S+ via smtpd \(for ";
    IGN_15 = r"^\S+ by \S+ \(.{0,100}\) with qmail-scanner";
    IGN_16 = r"^\S+ by \S+ with local";
    IGN_17 = r"^\S+ \(\[unix socket\]\) by \S+ \(Cyrus v[0-9]*?\.[0-9]*?\.[0-9]*?\) with LMTPA";
    IGN_18 = r"^\S+ by \S+ (?:with|via|for|\()";
    IGN_19 = r"^\S+ (?:(?:with|via|for) \S+|\(unverified\)) by\b";
    IGN_20 = r"^\S+ \(unknown\) by \S+ \(SG\) with \b";
    IGN_21 = r"^\S+ \(\S+ \[local\]\) by \S+ \(OpenSMTPD\) with \b";
    IGN_22 = r"\(LSMTP for";
    IGN_23 = r"^\(\[{LOCALHOST}\]\) with MailEnable ";
    IGN_24 = r"^facebook\.com \([^\)]+\) by facebook\.com with Thrift id \S+$";
    IGN_25 = r"^\S+ named \S+ by gmailapi\.google\.com with HTTPREST$";
    IGN_26 = r"^\S+ id \S+$";
    IGN_27 = r"^\[<.*? \(Jetsend";
    GUESS_HELO = r"^(\S+)[^-A-Za-z0-9\.]";
    SIMTA = r"^(\S+) \((\S+) \[({IP})\]\) BY (\S+) (?:\([^\)]+\) WITH SMTP )?ID <?(\S+?)>?(?: FOR <[^>]+>)?$";
    NAVGW = r"^(\S*) \[({IP})\]\) by (\S+) \(NAVGW .*?\) with ";
    SUBMIT_LOCAL = r"^\S+@localhost\) by \S+ ";
    JQUEUE = r"^[^\s@]+@[^)]+\) by \S+\(jqueuemail\) id [^\s;]+";
    ANY_BRACKET_IP = r"\[({IP})\]";
    IPV4_MAPPED = r"(?i)^0*:0*:(?:0*:)*ffff:(\d+\.\d+\.\d+\.\d+)$";
    SCOPE = r"(?i)%[A-Z0-9._~-]*$";
}

/// What the branches of [`parse_from`] found.
#[derive(Default)]
struct Found {
    ip: String,
    helo: String,
    rdns: String,
    by: String,
    id: String,
    ident: String,
    envfrom: Option<String>,
    auth: String,
    looked_up: bool,
}

/// Parses one Received field (its value, folded or not).
pub fn parse_line(field: &str) -> Parsed {
    // Whitespace runs to one space, trimmed, trailing semicolons gone.
    let mut s: String = field.split_whitespace().collect::<Vec<_>>().join(" ");
    while s.ends_with(';') {
        s.pop();
        if s.ends_with(' ') {
            s.pop();
        }
    }
    let date_at = {
        let t = Text::new(&s);
        if !is(&FROM_START, &t) || is(&WITH_LOCAL_FOR, &t) {
            return Parsed::Skip;
        }
        if let Some(c) = caps(&FROM_BY_SEMI, &t)
            && !is(&BRACKET_V4, &Text::new(&c[1]))
        {
            return Parsed::Skip;
        }
        match_start(&DATE_TAIL, &t)
    };
    if let Some(start) = date_at {
        s.truncate(start);
    }
    if let Some(i) = s.find(")by ") {
        s.insert(i + 1, ' ');
    }
    let t = Text::new(&s);
    let mut f = Found::default();
    if let Some(c) = caps(&ID, &t) {
        f.id = c[1].clone();
    }
    if let Some(c) = caps(&HELO_EQ, &t).or_else(|| caps(&HELO_WORD, &t)) {
        f.helo = c[1].clone();
    }
    if let Some(c) = caps(&BY, &t) {
        f.by = c[1].clone();
    }
    f.auth = auth(&t);
    let outcome = if let Some(rest) = s.strip_prefix("from ") {
        parse_from(rest, &mut f)
    } else if let Some(rest) = s.strip_prefix("FROM ") {
        parse_upper(rest, &mut f)
    } else if let Some(rest) = s.strip_prefix("(from ") {
        parse_paren(rest, &mut f)
    } else {
        // `From ` and other spellings: only the fall-through below.
        Step::Fall(s.clone())
    };
    match outcome {
        Step::Done => {}
        Step::Skip => return Parsed::Skip,
        Step::Fetcher => return Parsed::Fetcher,
        Step::Fall(rest) => {
            if f.ip.is_empty()
                && let Some(c) = caps(&ANY_BRACKET_IP, &Text::new(&rest))
            {
                f.ip = c[1].clone();
            }
            if f.ip.is_empty() || f.by.is_empty() {
                return Parsed::Unparseable;
            }
        }
    }
    Parsed::Relay(finish(f))
}

enum Step {
    /// A format recognised (SpamAssassin's `goto enough`).
    Done,
    Skip,
    Fetcher,
    /// Nothing recognised: the general fall-through over this text.
    Fall(String),
}

fn auth(s: &Text) -> String {
    if is(&HAS_BY, s)
        && let Some(c) = caps(&AUTH_WITH, s)
    {
        return c[1].clone();
    }
    if is(&AUTH_GMAIL, s)
        && let Some(c) = caps(&AUTH_GMAIL_TLS, s)
    {
        return format!("GMail - transport={} cipher={}", c[1], c[2]);
    }
    if let Some(c) = caps(&AUTH_COURIER, s) {
        return c[1].clone();
    }
    if is(&AUTHENTICATED, s) && is(&AUTH_SENDMAIL, s) {
        return "Sendmail".into();
    }
    if let Some(c) = caps(&AUTH_GMX, s) {
        return format!("GMX ({} / {})", c[4], c[3]);
    }
    if is(&AUTH_CP1, s) && is(&AUTH_CP2, s) {
        return "CriticalPath".into();
    }
    if let Some(c) = caps(&AUTH_POSTFIX, s) {
        return if c[1] == "Postfix" { c[1].clone() } else { format!("Postfix ({})", c[1]) };
    }
    if is(&AUTH_CGP1, s) && is(&AUTH_CGP2, s) {
        return "Communigate".into();
    }
    if is(&AUTH_DAV, s) {
        return "HTTP-DAV".into();
    }
    if is(&HAS_BY, s)
        && let Some(c) = caps(&AUTH_VIA_HTTP, s)
    {
        return c[1].clone();
    }
    String::new()
}

/// Sets the fields from groups: `(ip, helo, rdns, by)` as group numbers, 0 for none.
fn take(f: &mut Found, c: &[String], ip: usize, helo: usize, rdns: usize, by: usize) -> Step {
    let g = |i: usize| if i == 0 { None } else { c.get(i).cloned() };
    if let Some(v) = g(ip) {
        f.ip = v;
    }
    if let Some(v) = g(helo) {
        f.helo = v;
    }
    if let Some(v) = g(rdns) {
        f.rdns = v;
    }
    if let Some(v) = g(by) {
        f.by = v;
    }
    Step::Done
}

/// The branches for `from …` fields, in SpamAssassin's order.
fn parse_from(s: &str, f: &mut Found) -> Step {
    let s = &Text::new(s);
    if let Some(c) = caps(&ENVFROM, s) {
        f.envfrom = Some(c[1].clone());
    }
    if is(&SQUIRREL, s)
        && let Some(c) = caps(&SQUIRREL_IP, s)
    {
        return take(f, &c, 1, 0, 0, 2);
    }
    if is(&AOL_DOM, s)
        && is(&AOL_WEBMAIL, s)
        && let Some(c) = caps(&AOL_WEBMAIL_IP, s)
    {
        return take(f, &c, 1, 0, 0, 2);
    }
    if is(&SMTPSVC, s) {
        if let Some(c) = caps(&SMTPSVC_1, s) {
            return take(f, &c, 2, 1, 0, 3);
        }
        if is(&SMTPSVC_PICKUP, s) {
            return Step::Skip;
        }
    } else if is(&MS_SMTP, s) {
        if let Some(c) = caps(&MS_SMTP_1, s) {
            f.id.clear();
            return take(f, &c, 2, 1, 0, 3);
        }
    } else if is(&XMAIL, s) {
        if let Some(c) = caps(&XMAIL_1, s) {
            if let Some(i) = caps(&XMAIL_ID, s) {
                f.id = i[1].clone();
            }
            if let Some(e) = caps(&XMAIL_FROM, s) {
                f.envfrom = Some(e[1].clone());
            }
            return take(f, &c, 2, 1, 0, 3);
        }
    } else if is(&ECELERITY, s) {
        if let Some(c) = caps(&ECELERITY_1, s) {
            return take(f, &c, 1, 2, 0, 3);
        }
        if let Some(c) = caps(&ECELERITY_2, s) {
            return take(f, &c, 1, 0, 0, 2);
        }
    } else if is(&EXIM, s) {
        if is(&EXIM_LOCAL, s) {
            return Step::Skip;
        }
        if let Some(c) = caps(&EXIM_1, s) {
            take(f, &c, 1, 0, 0, 3);
            exim_sub(f, &c[2]);
            return Step::Done;
        }
        if let Some(c) = caps(&EXIM_2, s) {
            take(f, &c, 2, 1, 1, 4);
            exim_sub(f, &c[3]);
            return Step::Done;
        }
        if let Some(c) = caps(&EXIM_3, s) {
            return take(f, &c, 2, 1, 1, 4);
        }
        if let Some(c) = caps(&EXIM_4A, s) {
            f.rdns = c[1].clone();
        }
        if let Some(c) = caps(&EXIM_4B, s) {
            f.helo = c[1].clone();
        }
        if let Some(c) = caps(&EXIM_4C, s) {
            f.ip = c[1].clone();
        }
        if let Some(c) = caps(&EXIM_4D, s) {
            f.by = c[1].clone();
            if !f.ip.is_empty() {
                return Step::Done;
            }
        }
    } else if is(&POSTFIX, s) {
        for r in [&POSTFIX_1, &POSTFIX_2] {
            if let Some(c) = caps(r, s) {
                f.looked_up = true;
                take(f, &c, 3, 1, 2, 4);
                if f.rdns == "unknown" {
                    f.rdns.clear();
                }
                return Step::Done;
            }
        }
    } else if is(&SCALIX, s) {
        if let Some(c) = caps(&SCALIX_1, s) {
            return take(f, &c, 2, 1, 0, 3);
        }
    } else if is(&DOMINO, s)
        && let Some(c) = caps(&DOMINO_1, s)
    {
        f.looked_up = false;
        return take(f, &c, 2, 1, 0, 3);
    }
    if is(&WITH_HTTP, s)
        && let Some(c) = caps(&HTTP_1, s)
    {
        return take(f, &c, 1, 0, 0, 2);
    }
    if !is(&QMAIL_LDAP, s)
        && let Some(c) = caps(&SENDMAIL_1, s)
    {
        f.looked_up = true;
        take(f, &c, 3, 1, 2, 4);
        if let Some(i) = caps(&IDENT_PREFIX, &Text::new(&f.rdns)) {
            f.ident = i[1].clone();
            f.rdns = f.rdns[i[0].len()..].to_string();
        }
        if let Some(i) = caps(&IDENT_AT, &Text::new(&f.rdns)) {
            f.ident = i[1].clone();
            f.rdns = f.rdns[i[0].len()..].to_string();
        }
        return Step::Done;
    }
    if let Some(c) = caps(&EXCH55, s) {
        f.looked_up = true;
        return take(f, &c, 3, 1, 2, 4);
    }
    if let Some(c) = caps(&HELO_EQ_BY, s) {
        return take(f, &c, 2, 3, 1, 4);
    }
    if let Some(c) = caps(&UNKNOWN_DOMAIN, s) {
        return take(f, &c, 2, 1, 0, 3);
    }
    if let Some(c) = caps(&ATTBI, s) {
        f.looked_up = true;
        return take(f, &c, 3, 1, 2, 4);
    }
    if let Some(c) = caps(&IDENT_BRACKET, s) {
        f.looked_up = true;
        f.ident = c[2].clone();
        return take(f, &c, 3, 1, 0, 4);
    }
    if let Some(c) = caps(&HOTMAIL, s) {
        f.by = c[1].clone();
        if let Some(i) = caps(&LEADING_IP, s) {
            f.ip = i[1].clone();
        }
        return Step::Done;
    }
    if let Some(c) = caps(&QPSMTPD, s).or_else(|| caps(&LMTP, s)).or_else(|| caps(&GMX, s)) {
        return take(f, &c, 3, 2, 1, 4);
    }
    if let Some(c) = caps(&AOL_SMTPD, s) {
        return take(f, &c, 2, 1, 0, 3);
    }
    if is(&QMAIL, s) {
        if let Some(c) = caps(&QMAIL_1, s) {
            f.ident = c[3].clone();
            take(f, &c, 4, 2, 1, 6);
        } else if let Some(c) = caps(&QMAIL_2, s) {
            take(f, &c, 3, 2, 1, 5);
        } else if let Some(c) = caps(&QMAIL_3, s) {
            f.ident = c[2].clone();
            take(f, &c, 3, 1, 1, 5);
        } else if let Some(c) = caps(&QMAIL_4, s) {
            take(f, &c, 2, 1, 1, 4);
        }
        if f.rdns != "unknown" {
            f.looked_up = true;
        } else {
            f.rdns.clear();
        }
        return Step::Done;
    }
    if is(&VIA_HTTP_END, s)
        && let Some(c) = caps(&YAHOO_HTTP, s)
    {
        return take(f, &c, 1, 0, 0, 2);
    }
    if let Some(c) = caps(&SPACE_BRACKET, s) {
        return take(f, &c, 2, 0, 0, 3);
    }
    if let Some(c) = caps(&PAREN_IP_IP, s) {
        return take(f, &c, 2, 1, 0, 3);
    }
    if let Some(c) = caps(&BRACKET_BY, s) {
        return take(f, &c, 1, 0, 0, 2);
    }
    if let Some(c) = caps(&PAREN_IP_BY, s) {
        return take(f, &c, 1, 0, 0, 2);
    }
    if let Some(c) = caps(&MDAEMON_1, s) {
        f.looked_up = true;
        return take(f, &c, 2, 1, 0, 3);
    }
    if let Some(c) = caps(&MDAEMON_2, s) {
        return take(f, &c, 2, 1, 0, 3);
    }
    if let Some(c) = caps(&SENDMAIL_2, s) {
        f.looked_up = true;
        return take(f, &c, 2, 1, 0, 3);
    }
    if let Some(c) = caps(&SENDMAIL_3, s) {
        if c[2] == "softdnserr" {
            f.looked_up = false;
        } else {
            f.looked_up = true;
            f.rdns = c[2].clone();
        }
        return take(f, &c, 3, 1, 0, 4);
    }
    if let Some(c) = caps(&SENDMAIL_4, s) {
        f.looked_up = true;
        return take(f, &c, 2, 1, 0, 3);
    }
    if let Some(c) = caps(&SENDMAIL_5, s) {
        f.looked_up = true;
        return take(f, &c, 3, 1, 2, 4);
    }
    if is(&FETCHER, s) {
        return Step::Fetcher;
    }
    if let Some(c) = caps(&QMAILISH_1, s) {
        f.looked_up = true;
        f.ident = c[3].trim_end_matches('@').to_string();
        return take(f, &c, 4, 2, 1, 5);
    }
    if let Some(c) = caps(&QMAILISH_2, s) {
        f.looked_up = true;
        f.ident = c[2].trim_end_matches('@').to_string();
        return take(f, &c, 3, 1, 1, 4);
    }
    if is(&WITH_HTTP_FOR, s)
        && let Some(c) = caps(&OUTBLAZE, s)
    {
        return take(f, &c, 1, 0, 0, 2);
    }
    if is(&VIA_SMAP, s)
        && let Some(c) = caps(&SMAP_1, s)
    {
        f.looked_up = true;
        return take(f, &c, 2, 0, 1, 3);
    }
    if let Some(c) = caps(&SMAP_2, s) {
        f.looked_up = true;
        return take(f, &c, 2, 3, 1, 4);
    }
    if is(&POST_OFFICE, s)
        && let Some(c) = caps(&POST_OFFICE_1, s)
    {
        return take(f, &c, 1, 0, 0, 2);
    }
    if is(&ARGOSOFT, s)
        && let Some(c) = caps(&ARGOSOFT_1, s)
    {
        return take(f, &c, 1, 0, 0, 2);
    }
    if let Some(c) = caps(&INTERSCAN, s) {
        return take(f, &c, 1, 0, 0, 2);
    }
    if is(&BSMTP, s) && is(&BSMTP_1, s) {
        return Step::Skip;
    }
    if let Some(c) = caps(&SPIKE, s) {
        f.looked_up = true;
        return take(f, &c, 3, 1, 2, 4);
    }
    if let Some(c) = caps(&YAHOO_IDENT, s) {
        f.looked_up = true;
        f.ident = c[3].clone();
        return take(f, &c, 4, 2, 1, 5);
    }
    if let Some(c) = caps(&CGP_1, s) {
        return take(f, &c, 1, 2, 0, 3);
    }
    if is(&CGP_PRO, s)
        && let Some(c) = caps(&CGP_2, s)
    {
        f.looked_up = true;
        return take(f, &c, 2, 1, 1, 3);
    }
    if let Some(c) = caps(&CIPHERTRUST, s) {
        return take(f, &c, 1, 0, 0, 2);
    }
    if let Some(c) = caps(&IRONPORT, s) {
        return take(f, &c, 2, 1, 0, 3);
    }
    if is(&CONTENT_TECH, s) {
        return Step::Skip;
    }
    if let Some(c) = caps(&BLS, s) {
        return take(f, &c, 2, 1, 0, 4);
    }
    if let Some(c) = caps(&TUMBLEWEED, s) {
        return take(f, &c, 1, 0, 0, 2);
    }
    if let Some(c) = caps(&POBOX, s) {
        f.looked_up = true;
        return take(f, &c, 3, 1, 2, 4);
    }
    if let Some(c) = caps(&FSECURE, s).or_else(|| caps(&ALTAVISTA, s)) {
        return take(f, &c, 1, 2, 0, 3);
    }
    if let Some(c) = caps(&OEM, s) {
        return take(f, &c, 2, 1, 0, 3);
    }
    if let Some(c) = caps(&CSMAP, s) {
        return take(f, &c, 2, 0, 1, 3);
    }
    if let Some(c) = caps(&MAILGATE, s) {
        return take(f, &c, 1, 0, 0, 2);
    }
    if let Some(c) = caps(&UNVERIFIED, s) {
        return take(f, &c, 2, 1, 0, 3);
    }
    if let Some(c) = caps(&PROXYING, s) {
        return take(f, &c, 1, 0, 0, 2);
    }
    if let Some(c) = caps(&BRACKET_SUB, s) {
        take(f, &c, 1, 0, 0, 3);
        exim_sub(f, &c[2]);
        return Step::Done;
    }
    if let Some(c) = caps(&KDE, s) {
        return take(f, &c, 2, 0, 1, 3);
    }
    if let Some(c) = caps(&OBTUSE, s) {
        f.helo = c[3].clone();
        if c[1] != "UNKNOWN" {
            f.looked_up = true;
        }
        return take(f, &c, 2, 0, 1, 4);
    }
    if let Some(c) = caps(&YAHOO_LOGIN, s) {
        return take(f, &c, 3, 1, 0, 4);
    }
    if let Some(c) = caps(&ORIG_IP, s) {
        f.by.clear();
        return take(f, &c, 1, 0, 0, 0);
    }
    let ignored = [
        &IGN_1, &IGN_2, &IGN_3, &IGN_4, &IGN_5, &IGN_6, &IGN_7, &IGN_8, &IGN_9, &IGN_10, &IGN_11, &IGN_12, &IGN_13, &IGN_14, &IGN_15,
        &IGN_16, &IGN_17, &IGN_18, &IGN_19, &IGN_20, &IGN_21, &IGN_22, &IGN_23, &IGN_24, &IGN_25, &IGN_26, &IGN_27,
    ];
    if ignored.iter().any(|r| is(r, s)) {
        return Step::Skip;
    }
    if f.helo.is_empty()
        && let Some(c) = caps(&GUESS_HELO, s)
    {
        f.helo = c[1].clone();
    }
    Step::Fall(s.to_string())
}

/// Exim's `(helo=… ident=…)` comment.
fn exim_sub(f: &mut Found, sub: &str) {
    let sub = &Text::new(sub);
    if let Some(c) = caps(&SUB_HELO, sub) {
        f.helo = c[1].clone();
    }
    if let Some(c) = caps(&SUB_IDENT, sub) {
        f.ident = c[1].clone();
    }
}

/// simta's upper-case `FROM … BY … ID …`.
fn parse_upper(s: &str, f: &mut Found) -> Step {
    let s = &Text::new(s);
    if let Some(c) = caps(&SIMTA, s) {
        f.looked_up = true;
        f.id = c[5].clone();
        take(f, &c, 3, 1, 2, 4);
        if f.rdns == "unverified" {
            f.rdns.clear();
        }
        return Step::Done;
    }
    Step::Fall(s.to_string())
}

/// `(from …)` fields.
fn parse_paren(s: &str, f: &mut Found) -> Step {
    let s = &Text::new(s);
    if let Some(c) = caps(&NAVGW, s) {
        return take(f, &c, 2, 1, 0, 3);
    }
    if is(&SUBMIT_LOCAL, s) || is(&JQUEUE, s) {
        return Step::Skip;
    }
    Step::Fall(s.to_string())
}

/// SpamAssassin's clean-up after a format was recognised.
fn finish(f: Found) -> Relay {
    let mut rdns = f.rdns.trim_end_matches('.').to_string();
    if rdns.eq_ignore_ascii_case("unknown") || rdns.starts_with('[') {
        rdns.clear();
    }
    let mut ip = f.ip;
    if ip.len() >= 5 && ip[..5].eq_ignore_ascii_case("ipv6:") {
        ip = ip[5..].to_string();
    }
    if let Some(x) = ip.strip_prefix('[') {
        ip = x.to_string();
    }
    if let Some(x) = ip.strip_suffix(']') {
        ip = x.to_string();
    }
    if let Some(start) = match_start(&SCOPE, &Text::new(&ip)) {
        ip.truncate(start);
    }
    if let Some(c) = caps(&IPV4_MAPPED, &Text::new(&ip)) {
        ip = c[1].clone();
    }
    let by = f.by.strip_suffix(';').unwrap_or(&f.by).to_string();
    let envfrom = f
        .envfrom
        .map(|e| {
            let e = e.trim_start().trim_start_matches('<');
            let e = e.trim_end().trim_end_matches('>');
            strip(e)
        })
        .unwrap_or_default();
    let no_reverse_dns = rdns.is_empty() && f.looked_up;
    let ip_private = is_private(&ip);
    Relay {
        ip: strip(&ip),
        rdns: strip(&rdns),
        helo: strip(&f.helo),
        by: strip(&by),
        ident: strip(&f.ident),
        envfrom,
        id: f.id,
        auth: f.auth,
        no_reverse_dns,
        ip_private,
        internal: false,
    }
}

/// Characters SpamAssassin replaces with `!` (so `[1.2.3.4]` reads `!1.2.3.4!`).
fn strip(s: &str) -> String {
    s.chars().map(|c| if c.is_whitespace() || "\0#[]()<>|".contains(c) { '!' } else { c }).collect()
}

/// SpamAssassin's IP_PRIVATE, a prefix match on the text: 10/8, 127/8, 169.254/16, 172.16/12,
/// 192.168/16, 100.64/10, the same mapped into IPv6, fe80::/10 and ::1.
pub fn is_private(ip: &str) -> bool {
    static V4: LazyLock<Regex> = LazyLock::new(|| {
        re(r"^(?:10|127|169\.254|172\.(?:1[6-9]|2[0-9]|3[01])|192\.168|100\.(?:6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7]))\..*")
    });
    static V6: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"(?i)^(?:IPv6:)?(?:(?:(?:0{1,4}:){5}ffff:|::(?:0{1,4}:){0,4}ffff:|(?:0{1,4}:){1,4}:ffff:|0{1,4}::(?:0{1,4}:){1,3}ffff:|(?:0{1,4}:){2}:0{1,2}:ffff:|(?:0{1,4}:){3}:0:ffff:|(?:0{1,4}:){4}:ffff:)(?:10|127|169\.254|172\.(?:1[6-9]|2[0-9]|3[01])|192\.168|100\.(?:6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7]))\..*|fe[89ab][0-9a-f]:.*|(?:0{1,4}:){7}0{0,3}1|:(?::0{1,4}){0,6}:0{0,3}1|0{1,4}:(?::0{1,4}){0,5}:0{0,3}1|(?:0{1,4}:){2}(?::0{1,4}){0,4}:0{0,3}1|(?:0{1,4}:){3}(?::0{1,4}){0,3}:0{0,3}1|(?:0{1,4}:){4}(?::0{1,4}){0,2}:0{0,3}1|(?:0{1,4}:){5}(?::0{1,4}){0,1}:0{0,3}1|(?:0{1,4}:){6}:0{0,3}1)(?![a-f0-9:])",
        )
    });
    found(&V4, ip) || found(&V6, ip)
}

/// SpamAssassin's IS_IPV4_ADDRESS.
pub fn is_ipv4(s: &str) -> bool {
    static R: LazyLock<Regex> =
        LazyLock::new(|| re(r"^(?:(?:1\d\d|2[0-4]\d|25[0-5]|[1-9]\d|\d)\.){3}(?:1\d\d|2[0-4]\d|25[0-5]|[1-9]\d|\d)$"));
    found(&R, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(line: &str) -> Relay {
        match parse_line(line) {
            Parsed::Relay(r) => r,
            other => panic!("{line}: {other:?}"),
        }
    }

    /// Fields of many formats, as `parse_line` sees them (whitespace squeezed) and as the
    /// branches do (after `from `).
    const SAMPLES: &[&str] = &[
        "from mail.example.org (mail.example.org [192.0.2.1]) by mx.example.net (Postfix) with ESMTP id A96E18BD97 for <jm@example.net>",
        "from mail1.insuranceiq.com (host66.insuranceiq.com [65.217.159.66] (may be forged)) by dogma.slashnull.org (8.11.6/8.11.6) with ESMTP id h2F0c2x31856",
        "from dsl092-072-213.bos1.dsl.speakeasy.net ([66.92.72.213] helo=blazing.arsecandle.org) by sc8-sf-list1.sourceforge.net with esmtp (Exim 3.31-VA-mm2 #1 (Debian)) id 18lyuU-0007TI-00",
        "from unknown (HELO terpsichore.farfalle.com) (jdavid@[216.254.40.70]) by mail13.speakeasy.net with SMTP",
        "from tthompson ([217.35.105.172] unverified) by mail.neosinteractive.com with Microsoft SMTPSVC(5.0.2195.5329)",
        "from EXC-DAG-02.global.net (10.45.252.152) by EXC-DAG-02.global.net (10.45.252.152) with Microsoft SMTP Server (version=TLS1_2, cipher=X) id 15.1.1261.35",
        "from [IPv6:2001:db8::1] (helo [2001:db8::1]) by mx.example.net with ESMTPSA id 42",
        "from localhost (localhost [127.0.0.1]) by mx.example.net (Postfix) with ESMTP id 1",
        "(qmail 1234 invoked by uid 500); 1 Jan 2003",
        "from [10.0.0.1] by web1.mail.yahoo.com via HTTP",
        "FROM a.example (b.example [192.0.2.7]) BY c.example WITH SMTP ID <x1>",
        "from mx.google.com with ESMTPS id abcsm123456abc.1.2024.01.02.03.04.05",
    ];

    #[test]
    fn the_gate_rules_out_only_patterns_that_cannot_match() {
        let mut ruled_out = 0;
        for sample in SAMPLES {
            for text in [*sample, sample.strip_prefix("from ").unwrap_or(sample)] {
                let t = Text::new(text);
                for p in ALL {
                    if !t.may_match(p) {
                        ruled_out += 1;
                        assert!(!found(&p.regex, text), "{} ruled out on {text:?} but matches", SOURCES[p.index]);
                    }
                }
            }
        }
        let gated = GATE.required.iter().filter(|r| !r.is_empty()).count();
        assert!(gated * 10 >= ALL.len() * 9, "only {gated} of {} patterns have literals", ALL.len());
        assert!(ruled_out * 2 > SAMPLES.len() * 2 * ALL.len(), "the gate ruled out {ruled_out} tries");
    }

    #[test]
    fn postfix_with_and_without_rdns() {
        let r = relay(
            "from mail.example.org (mail.example.org [192.0.2.1])\n\tby mx.example.net (Postfix) with ESMTP id A96E18BD97\n\tfor <jm@example.net>; Thu, 13 Mar 2003 15:23:15 -0500 (EST)",
        );
        assert_eq!(
            r.as_string(),
            "[ ip=192.0.2.1 rdns=mail.example.org helo=mail.example.org by=mx.example.net ident= envfrom= intl=0 id=A96E18BD97 auth= msa=0 ]"
        );
        let r = relay(
            "from helo.example (unknown [203.0.113.9]) by mx.example.net (Postfix) with SMTP id 1234; Mon, 1 Jan 2024 00:00:00 +0000",
        );
        assert_eq!((r.rdns.as_str(), r.helo.as_str(), r.no_reverse_dns), ("", "helo.example", true));
    }

    #[test]
    fn sendmail_exim_qmail_exchange_formats() {
        let r = relay(
            "from mail1.insuranceiq.com (host66.insuranceiq.com [65.217.159.66] (may be forged)) by dogma.slashnull.org (8.11.6/8.11.6) with ESMTP id h2F0c2x31856 for <jm@jmason.org>; Sat, 15 Mar 2003 00:38:03 GMT",
        );
        assert_eq!(
            (r.ip.as_str(), r.rdns.as_str(), r.helo.as_str(), r.by.as_str()),
            ("65.217.159.66", "host66.insuranceiq.com", "mail1.insuranceiq.com", "dogma.slashnull.org")
        );
        let r = relay(
            "from dsl092-072-213.bos1.dsl.speakeasy.net ([66.92.72.213] helo=blazing.arsecandle.org) by sc8-sf-list1.sourceforge.net with esmtp (Cipher TLSv1:DES-CBC3-SHA:168) (Exim 3.31-VA-mm2 #1 (Debian)) id 18lyuU-0007TI-00 for <x@y>; Thu, 20 Feb 2003 14:11:18 -0800",
        );
        assert_eq!(
            (r.ip.as_str(), r.rdns.as_str(), r.helo.as_str()),
            ("66.92.72.213", "dsl092-072-213.bos1.dsl.speakeasy.net", "blazing.arsecandle.org")
        );
        let r = relay(
            "from unknown (HELO terpsichore.farfalle.com) (jdavid@[216.254.40.70]) by mail13.speakeasy.net with SMTP; 12 Feb 2003 18:23:19 -0000",
        );
        assert_eq!(
            (r.ip.as_str(), r.rdns.as_str(), r.helo.as_str(), r.ident.as_str()),
            ("216.254.40.70", "", "terpsichore.farfalle.com", "jdavid")
        );
        let r = relay(
            "from tthompson ([217.35.105.172] unverified) by mail.neosinteractive.com with Microsoft SMTPSVC(5.0.2195.5329); Tue, 11 Mar 2003 13:23:01 +0000",
        );
        assert_eq!((r.ip.as_str(), r.helo.as_str(), r.no_reverse_dns), ("217.35.105.172", "tthompson", false));
        let r = relay(
            "from EXC-DAG-02.global.net (10.45.252.152) by EXC-DAG-02.global.net (10.45.252.152) with Microsoft SMTP Server (version=TLS1_2, cipher=X) id 15.1.1261.35; Mon, 29 Oct 2018 11:17:19 +0100",
        );
        assert_eq!((r.ip.as_str(), r.id.as_str(), r.ip_private), ("10.45.252.152", "15.1.1261.35", true));
    }

    #[test]
    fn ipv6_literal_helo_and_auth() {
        let r = relay(
            "from [IPv6:2001:db8::1] (unknown [IPv6:2001:db8::1]) by mx.example.net (Postfix) with ESMTPSA id X1; Mon, 1 Jan 2024 00:00:00 +0000",
        );
        assert_eq!((r.ip.as_str(), r.helo.as_str(), r.auth.as_str()), ("2001:db8::1", "!IPv6:2001:db8::1!", "ESMTPSA"));
        let r =
            relay("from [192.0.2.7] (helo=[192.0.2.7]) by mx.example.net with smtp (Exim 4.96) id 1abc-00; Mon, 1 Jan 2024 00:00:00 +0000");
        assert_eq!((r.ip.as_str(), r.helo.as_str()), ("192.0.2.7", "!192.0.2.7!"));
    }

    #[test]
    fn skipped_and_unparseable() {
        assert_eq!(
            parse_line("by mx.example.net (Postfix, from userid 1002) id DABBD1BED3; Thu, 13 Feb 2003 14:02:21 +0100"),
            Parsed::Skip
        );
        assert_eq!(parse_line("(qmail 27981 invoked by uid 225); 14 Mar 2003 07:24:34 -0000"), Parsed::Skip);
        assert_eq!(
            parse_line("from andrew by trinity.supernews.net with local (Exim 4.12) id 18xeL6; Tue, 25 Mar 2003 02:39:00 +0000"),
            Parsed::Skip
        );
        assert_eq!(
            parse_line(
                "from cabbage.jmason.org [127.0.0.1] by localhost with IMAP (fetchmail-5.9.0) for jm@localhost (single-drop); Thu, 13 Mar 2003 20:39:56 -0800 (PST)"
            ),
            Parsed::Fetcher
        );
        assert_eq!(parse_line("from nowhere with nothing"), Parsed::Unparseable);
    }

    #[test]
    fn trust_is_inferred_from_private_and_authenticated_relays() {
        let fields = [
            "from localhost (localhost [127.0.0.1]) by mx.example.net (Postfix) with ESMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000",
            "from gw.example.net (gw.example.net [10.0.0.2]) by mx.example.net (Postfix) with ESMTP id 2; Mon, 1 Jan 2024 00:00:00 +0000",
            "from bad.example (unknown [203.0.113.9]) by gw.example.net (Postfix) with SMTP id 3; Mon, 1 Jan 2024 00:00:00 +0000",
            "from inner (inner [10.9.9.9]) by bad.example (Postfix) with SMTP id 4; Mon, 1 Jan 2024 00:00:00 +0000",
        ];
        let relays = Relays::infer(fields, ConnectionTrust::Unknown);
        assert_eq!(relays.trusted.len(), 2);
        assert_eq!(relays.untrusted.len(), 2);
        assert!(relays.pseudo_header("Untrusted").unwrap().starts_with("[ ip=203.0.113.9 rdns= helo=bad.example "));
        assert!(relays.pseudo_header("Trusted").unwrap().contains(" intl=1 "));
        let from_public = Relays::infer(fields, ConnectionTrust::Public);
        assert_eq!((from_public.trusted.len(), from_public.untrusted.len()), (0, 4));
        assert_eq!(ConnectionTrust::of("203.0.113.1".parse().unwrap()), ConnectionTrust::Public);
        assert_eq!(ConnectionTrust::of("10.1.1.1".parse().unwrap()), ConnectionTrust::Private);
        assert_eq!(ConnectionTrust::of("::1".parse().unwrap()), ConnectionTrust::Unknown);
    }

    #[test]
    fn private_addresses() {
        for ip in ["10.1.2.3", "127.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fe80::1", "::1", "::ffff:10.0.0.1"] {
            assert!(is_private(ip), "{ip}");
        }
        for ip in ["192.0.2.1", "172.32.0.1", "2001:db8::1", "100.128.0.1"] {
            assert!(!is_private(ip), "{ip}");
        }
    }
}
