//! Operators (`@rx`, `@pm`, `@eq`, ...): parsed and compiled once per rule set, evaluated
//! against byte strings.

use crate::macros::Template;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use ipnet::IpNet;
use regex::bytes::{Regex, RegexBuilder};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum OpKind {
    Rx(Regex),
    /// The matcher and its phrases (kept for the chain prefilter).
    Pm(AhoCorasick, Vec<Vec<u8>>),
    DetectSqli,
    DetectXss,
    ValidateByteRange(Box<[bool; 256]>),
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    IpMatch(Vec<IpNet>),
    Unconditional,
    /// `@rx ^.*$`, `^.*` or `.*`: with `.` matching newlines too, the leftmost match starts at
    /// 0 and runs to the end, so every value matches as a whole (CRS 920450 captures each
    /// header name this way).
    Whole,
    NoMatch,
    /// Operators whose argument may hold macros, expanded per evaluation.
    Within(Template),
    StrEq(Template),
    Contains(Template),
    ContainsWord(Template),
    BeginsWith(Template),
    EndsWith(Template),
    Num(NumCmp, Template),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumCmp {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

impl NumCmp {
    /// `a <cmp> b`.
    pub fn holds(self, a: i64, b: i64) -> bool {
        match self {
            NumCmp::Eq => a == b,
            NumCmp::Ge => a >= b,
            NumCmp::Gt => a > b,
            NumCmp::Le => a <= b,
            NumCmp::Lt => a < b,
        }
    }
}

#[derive(Debug)]
pub struct Operator {
    pub kind: OpKind,
    pub negated: bool,
}

/// Compiles a pattern as ModSecurity does (PCRE with DOTALL and MULTILINE) over bytes.
pub fn compile_regex(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
    RegexBuilder::new(&byte_escapes(pattern))
        .unicode(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .case_insensitive(case_insensitive)
        .size_limit(64 << 20)
        .dfa_size_limit(8 << 20)
        .build()
        .map_err(|e| format!("regular expression does not compile: {e}"))
}

/// Rewrites `\x{hh}` as `\xhh`: with Unicode off the braced form means a code point (refused
/// above U+007F) while the plain form is the byte PCRE means.
pub(crate) fn byte_escapes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(at) = rest.find('\\') {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let braced = tail.strip_prefix("\\x{").and_then(|t| {
            let end = t.find('}')?;
            let hex = t.get(..end)?;
            (!hex.is_empty() && hex.len() <= 2 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some((hex, end))
        });
        if let Some((hex, end)) = braced {
            out.push_str(&format!("\\x{hex:0>2}"));
            rest = tail.get(3 + end + 1..).unwrap_or_default();
        } else {
            out.push_str(tail.get(..2).unwrap_or(tail));
            rest = tail.get(2..).unwrap_or_default();
        }
    }
    out.push_str(rest);
    out
}

fn phrases_matcher(phrases: &[Vec<u8>]) -> Result<AhoCorasick, String> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(phrases)
        .map_err(|e| format!("phrase list does not compile: {e}"))
}

fn byte_ranges(spec: &str) -> Result<Box<[bool; 256]>, String> {
    let mut allowed = Box::new([false; 256]);
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: u8 = lo.parse().map_err(|_| format!("bad byte range {part}"))?;
        let hi: u8 = hi.parse().map_err(|_| format!("bad byte range {part}"))?;
        if lo > hi {
            return Err(format!("bad byte range {part}"));
        }
        for b in lo..=hi {
            if let Some(slot) = allowed.get_mut(usize::from(b)) {
                *slot = true;
            }
        }
    }
    Ok(allowed)
}

/// Reads a `@pmFromFile` list: one phrase per line, `#` comments and blank lines skipped.
/// The files read are added to `sources`.
fn phrase_file(dir: &Path, name: &str, sources: &mut Vec<PathBuf>) -> Result<Vec<Vec<u8>>, String> {
    let mut phrases = Vec::new();
    for file in name.split_whitespace() {
        let path = dir.join(file);
        let text = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        sources.push(path);
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() || trimmed.starts_with(b"#") {
                continue;
            }
            phrases.push(trimmed.to_vec());
        }
    }
    Ok(phrases)
}

impl Operator {
    /// Parses `"@rx ..."`, `"!@eq 0"` or a bare pattern (an implicit `@rx`). `dir` is where
    /// `@pmFromFile` lists are looked up.
    pub fn parse(text: &str, dir: &Path) -> Result<Operator, String> {
        Operator::parse_reading(text, dir, &mut Vec::new())
    }

    /// [`Operator::parse`], adding the files it reads (`@pmFromFile` lists) to `sources`.
    pub fn parse_reading(text: &str, dir: &Path, sources: &mut Vec<PathBuf>) -> Result<Operator, String> {
        let (negated, rest) = match text.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (name, arg) = match rest.strip_prefix('@') {
            Some(r) => match r.split_once([' ', '\t']) {
                Some((n, a)) => (n, a.trim_start()),
                None => (r, ""),
            },
            None => ("rx", rest),
        };
        let template = || Template::parse(arg);
        let kind = match name.to_ascii_lowercase().as_str() {
            "rx" if matches!(arg, "^.*$" | "^.*" | ".*") => OpKind::Whole,
            "rx" => OpKind::Rx(compile_regex(arg, false)?),
            "pm" => {
                let phrases: Vec<Vec<u8>> = arg.split_whitespace().map(|p| p.as_bytes().to_vec()).collect();
                OpKind::Pm(phrases_matcher(&phrases)?, phrases)
            }
            "pmfromfile" | "pmf" => {
                let phrases = phrase_file(dir, arg, sources)?;
                OpKind::Pm(phrases_matcher(&phrases)?, phrases)
            }
            "detectsqli" => {
                // Built now, with the rules, rather than inside the first request (~2 ms).
                std::sync::LazyLock::force(&SQL_WORDS);
                OpKind::DetectSqli
            }
            "detectxss" => OpKind::DetectXss,
            "validatebyterange" => OpKind::ValidateByteRange(byte_ranges(arg)?),
            "validateurlencoding" => OpKind::ValidateUrlEncoding,
            "validateutf8encoding" => OpKind::ValidateUtf8Encoding,
            "ipmatch" => {
                let nets = arg.split([',', ' ']).filter(|s| !s.is_empty()).map(parse_net).collect::<Result<_, _>>()?;
                OpKind::IpMatch(nets)
            }
            "unconditionalmatch" => OpKind::Unconditional,
            "nomatch" => OpKind::NoMatch,
            "within" => OpKind::Within(template()?),
            "streq" => OpKind::StrEq(template()?),
            "contains" => OpKind::Contains(template()?),
            "containsword" => OpKind::ContainsWord(template()?),
            "beginswith" => OpKind::BeginsWith(template()?),
            "endswith" => OpKind::EndsWith(template()?),
            "eq" => OpKind::Num(NumCmp::Eq, template()?),
            "ge" => OpKind::Num(NumCmp::Ge, template()?),
            "gt" => OpKind::Num(NumCmp::Gt, template()?),
            "le" => OpKind::Num(NumCmp::Le, template()?),
            "lt" => OpKind::Num(NumCmp::Lt, template()?),
            "rbl" | "geolookup" | "inspectfile" | "fuzzyhash" | "verifycc" | "verifycpf" | "verifyssn"
            | "gsblookup" | "rsub" | "ipmatchfromfile" | "ipmatchf" | "strmatch" | "validatedtd" | "validateschema"
            | "validatehash" => {
                return Err(format!("operator @{name} is not supported by Portcullis"));
            }
            _ => return Err(format!("unknown operator @{name}")),
        };
        Ok(Operator { kind, negated })
    }

    /// A second set like [`Operator::literals`]'s, one of which every match also holds.
    pub fn second_literals(&self) -> Option<Vec<Vec<u8>>> {
        match &self.kind {
            OpKind::Rx(re) if !self.negated => crate::prefilter::second_literals(re.as_str()),
            _ => None,
        }
    }

    /// Lower-case strings one of which any value this operator matches contains (a necessary
    /// condition, used to skip the operator); `None` when there is no such set.
    pub fn literals(&self) -> Option<Vec<Vec<u8>>> {
        if self.negated {
            return None;
        }
        match &self.kind {
            OpKind::Rx(re) => crate::prefilter::necessary_literals(re.as_str()),
            OpKind::Pm(_, phrases) if !phrases.is_empty() && phrases.iter().all(|p| !p.is_empty()) => {
                Some(phrases.iter().map(|p| p.to_ascii_lowercase()).collect())
            }
            // Single bytes, which the prefilter looks up per byte (a few hundred cost little):
            // a value flagged holds a byte outside the ranges, a byte of invalid UTF-8 is not
            // ASCII, and the XSS check needs `<` or `=` ([`may_be_xss`]).
            OpKind::ValidateByteRange(allowed) => {
                let mut outside: Vec<Vec<u8>> = (0..=255u8)
                    .filter(|&b| !allowed.get(usize::from(b)).copied().unwrap_or(false))
                    .map(|b| vec![b.to_ascii_lowercase()])
                    .collect();
                outside.sort();
                outside.dedup();
                (!outside.is_empty()).then_some(outside)
            }
            OpKind::ValidateUtf8Encoding => Some((0x80..=0xffu8).map(|b| vec![b]).collect()),
            OpKind::DetectXss => Some(vec![b"<".to_vec(), b"=".to_vec()]),
            _ => None,
        }
    }

    /// The template of the argument when it must be expanded per evaluation.
    pub fn template(&self) -> Option<&Template> {
        match &self.kind {
            OpKind::Within(t)
            | OpKind::StrEq(t)
            | OpKind::Contains(t)
            | OpKind::ContainsWord(t)
            | OpKind::BeginsWith(t)
            | OpKind::EndsWith(t)
            | OpKind::Num(_, t) => Some(t),
            _ => None,
        }
    }

    /// Evaluates without negation. `arg` is the expanded template (when [`Self::template`] is
    /// some); `captures` receives TX.0..TX.9 when the rule captures.
    pub fn matches(&self, value: &[u8], arg: &[u8], captures: Option<&mut Vec<Vec<u8>>>) -> bool {
        #[cfg(feature = "rule-profile")]
        crate::profile::operator_call();
        match &self.kind {
            OpKind::Rx(re) => match captures {
                None => re.is_match(value),
                // Most values do not match: the match test needs no allocation, and the
                // capture search (which allocates its groups) runs only on a match.
                Some(_) if !re.is_match(value) => false,
                // Without groups TX.0 is the match itself: `find` runs the DFAs, cheaper than
                // the capture engines (CRS 920450's `^.*$` on every header name).
                Some(caps) if re.captures_len() == 1 => match re.find(value) {
                    Some(m) => {
                        set_captures(caps, std::iter::once(m.as_bytes()));
                        true
                    }
                    None => false,
                },
                Some(caps) => match re.captures(value) {
                    Some(c) => {
                        set_captures(caps, c.iter().take(10).map(|g| g.map_or(&[][..], |m| m.as_bytes())));
                        true
                    }
                    None => false,
                },
            },
            OpKind::Pm(ac, _) => match ac.find(value) {
                Some(m) => {
                    if let Some(caps) = captures {
                        set_captures(caps, std::iter::once(value.get(m.range()).unwrap_or_default()));
                    }
                    true
                }
                None => false,
            },
            OpKind::DetectSqli if !may_be_sqli(value) => false,
            OpKind::DetectSqli => {
                // `detect_sqli` would fingerprint the value once more after detecting, for a
                // fingerprint wanted only on a match: the state is used directly.
                let mut state = libinjectionrs::SqliState::new(value, libinjectionrs::SqliFlags::FLAG_NONE);
                if !state.detect() {
                    return false;
                }
                if let Some(caps) = captures {
                    set_captures(caps, std::iter::once(state.get_fingerprint().as_str().as_bytes()));
                }
                true
            }
            OpKind::DetectXss => may_be_xss(value) && libinjectionrs::detect_xss(value).is_injection(),
            OpKind::ValidateByteRange(allowed) => {
                value.iter().any(|&b| !allowed.get(usize::from(b)).copied().unwrap_or(false))
            }
            OpKind::ValidateUrlEncoding => invalid_url_encoding(value),
            OpKind::ValidateUtf8Encoding => std::str::from_utf8(value).is_err(),
            OpKind::IpMatch(nets) => std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            OpKind::Unconditional => true,
            OpKind::Whole => {
                if let Some(caps) = captures {
                    set_captures(caps, std::iter::once(value));
                }
                true
            }
            OpKind::NoMatch => false,
            OpKind::Within(_) => within(arg, value),
            OpKind::StrEq(_) => value == arg,
            OpKind::Contains(_) => memchr::memmem::find(value, arg).is_some(),
            OpKind::ContainsWord(_) => contains_word(value, arg),
            OpKind::BeginsWith(_) => value.starts_with(arg),
            OpKind::EndsWith(_) => value.ends_with(arg),
            OpKind::Num(cmp, _) => cmp.holds(leading_int(value), leading_int(arg)),
        }
    }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("@ipMatch: not an address or CIDR: {s}"))
}

/// The integer at the start of a value, as C's `atoi` reads it (0 when there is none).
pub fn leading_int(value: &[u8]) -> i64 {
    let s = value.trim_ascii_start();
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, s.get(1..).unwrap_or_default()),
        Some(b'+') => (false, s.get(1..).unwrap_or_default()),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for &d in digits.iter().take_while(|d| d.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(i64::from(d - b'0'));
    }
    if neg { -n } else { n }
}

fn invalid_url_encoding(value: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if b == b'%' {
            let ok = value.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && value.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

fn contains_word(value: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let is_word = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    memchr::memmem::find_iter(value, word)
        .any(|at| !is_word(at.checked_sub(1).and_then(|p| value.get(p))) && !is_word(value.get(at + word.len())))
}

/// Replaces `caps` with `groups`, reusing its buffers (a capturing rule such as CRS 920450
/// captures on every header name of every request).
fn set_captures<'g>(caps: &mut Vec<Vec<u8>>, groups: impl Iterator<Item = &'g [u8]>) {
    let mut n = 0;
    for (i, g) in groups.enumerate() {
        match caps.get_mut(i) {
            Some(buf) => {
                buf.clear();
                buf.extend_from_slice(g);
            }
            None => caps.push(g.to_vec()),
        }
        n = i + 1;
    }
    caps.truncate(n);
}

/// False only for values libinjection's SQLi check cannot flag: a word (an ASCII letter or
/// `_`, then letters, digits, `_` and `.`, where no part before a `.` is an SQL keyword) or
/// a number (digits, or digits, `.`, digits). Such a value has no quote (so only the
/// unquoted ANSI pass runs) and no comment (so no MySQL pass), and its tokenizer reads it as
/// one token: a number is one number token; in a letter-led value no byte ends a word, the
/// string prefixes `b' e' n' q' u&' x'` need a quote, and a word is split at a `.` only
/// after a keyword (the check below mirrors that). A one-token fingerprint is the token's
/// type and is never whitelisted; tests/sqli_screen.rs runs libinjection over every keyword
/// of its table alone and dotted (every type a word can get) and finds none flagged.
/// Argument and JSON names, cookie names and many values are such words; libinjection was
/// ~13% of a benign GET and ~29% of the JSON POST (docs/performance.md, fifth pass).
/// Also false for a word without dots, one `-` and digits (`SKU-4100`, `cus-7731`): a word
/// token, an operator and a number; no keyword of the table in that place (every type) and
/// no plain word is flagged (tests/sqli_screen.rs), and the `-` is no comment as no second
/// dash follows.
pub fn may_be_sqli(value: &[u8]) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.';
    match value.first() {
        None => false,
        Some(b) if b.is_ascii_digit() => !decimal(value),
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {
            if word_dash_digits(value) {
                return false;
            }
            !value.iter().all(word) || memchr::memchr_iter(b'.', value).any(|dot| sql_keyword(value.get(..dot)))
        }
        Some(_) => true,
    }
}

/// Whether `needle` occurs in `hay`. `@within`'s list (`hay`) is short and the needle new
/// at every call: `memmem::find` would build a searcher per call, costlier than a scan for
/// the needle's second byte (its first is often a list's separator, as CRS's `/name/`).
fn within(hay: &[u8], needle: &[u8]) -> bool {
    match needle {
        [] => true,
        [b] => memchr::memchr(*b, hay).is_some(),
        [_, second, ..] if hay.len() <= 1024 => {
            memchr::memchr_iter(*second, hay).any(|i| i >= 1 && hay.get(i - 1..i - 1 + needle.len()) == Some(needle))
        }
        _ => memchr::memmem::find(hay, needle).is_some(),
    }
}

/// A word of letters, digits and `_` (no `.`), one `-`, then digits only.
fn word_dash_digits(value: &[u8]) -> bool {
    let Some(dash) = memchr::memchr(b'-', value) else { return false };
    let (word, digits) = (value.get(..dash).unwrap_or_default(), value.get(dash + 1..).unwrap_or_default());
    word.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
}

/// Digits, or digits, one `.` and digits (`12.5`): one number token to libinjection.
fn decimal(value: &[u8]) -> bool {
    let digits = |p: &[u8]| !p.is_empty() && p.iter().all(u8::is_ascii_digit);
    match memchr::memchr(b'.', value) {
        None => digits(value),
        Some(dot) => digits(value.get(..dot).unwrap_or_default()) && digits(value.get(dot + 1..).unwrap_or_default()),
    }
}

/// libinjection's words that are not barewords (its tokenizer splits a word after one).
/// (hashbrown's default hasher: std's SipHash was ~1% of a JSON POST, one lookup per dotted
/// name part.)
static SQL_WORDS: std::sync::LazyLock<hashbrown::HashSet<&'static [u8]>> = std::sync::LazyLock::new(|| {
    libinjectionrs::sqli::sqli_data::SQL_KEYWORDS
        .iter()
        .filter(|k| b"kfUETto&v1ABF".contains(&k.token_type))
        .map(|k| k.word.as_bytes())
        .collect()
});

/// Whether `word` (ASCII) is one of [`SQL_WORDS`] in any letter case.
fn sql_keyword(word: Option<&[u8]>) -> bool {
    let mut upper = [0u8; 32];
    let Some(word) = word else { return true };
    let Some(buf) = upper.get_mut(..word.len()) else { return false };
    for (u, b) in buf.iter_mut().zip(word) {
        *u = b.to_ascii_uppercase();
    }
    SQL_WORDS.contains(&*buf)
}

/// False only for values libinjection's XSS check cannot flag: those with neither `<` nor
/// `=`. It reports a value when its HTML5 tokenizer, started in each of five contexts (text,
/// and unquoted, single-, double- and back-quoted attribute value), yields a doctype, a tag
/// name, a comment, or an attribute value that follows a dangerous attribute name. Every
/// tag, doctype and comment state is entered only from a `<` in text; an attribute value
/// follows an attribute name only through an `=`; the value a quoted context starts in has
/// no name before it. Most values (header values, JSON strings) have neither byte, and the
/// five tokenizer passes were ~4% of a benign GET and ~6% of a JSON POST
/// (docs/performance.md, fifth pass). tests/xss_screen.rs checks it against libinjection.
pub fn may_be_xss(value: &[u8]) -> bool {
    memchr::memchr2(b'<', b'=', value).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(text: &str) -> Operator {
        Operator::parse(text, Path::new(".")).unwrap()
    }

    fn hit(o: &Operator, value: &str, arg: &str) -> bool {
        o.matches(value.as_bytes(), arg.as_bytes(), None) != o.negated
    }

    #[test]
    fn regex_is_bytewise_dotall_multiline() {
        let o = op("@rx ^b.c$");
        assert!(hit(&o, "a\nb\nc", ""));
        let o = op("@rx \\xff");
        assert!(o.matches(b"a\xffb", b"", None));
        let mut caps = Vec::new();
        assert!(op("@rx (a)(b)?").matches(b"xa", b"", Some(&mut caps)));
        assert_eq!(caps, vec![b"a".to_vec(), b"a".to_vec(), Vec::new()]);
        assert!(hit(&op("^admin"), "admin", ""));
        assert!(op("@rx [\\x7f-\\x{ff}]").matches(b"\xe9", b"", None));
        assert_eq!(byte_escapes("a\\\\x{41}\\x{7}\\x{100}"), "a\\\\x{41}\\x07\\x{100}");
        assert!(!hit(&op("!@rx a"), "abc", ""));
    }

    #[test]
    fn a_whole_value_expression_captures_what_the_regex_would() {
        let whole = op("@rx ^.*$");
        assert!(matches!(whole.kind, OpKind::Whole));
        for pattern in ["^.*$", "^.*", ".*"] {
            let re = compile_regex(pattern, false).unwrap();
            for value in [&b""[..], b"accept-language", b"a\nb\n", b"\n\nx", b"\xff\x00z"] {
                let mut caps = Vec::new();
                assert!(op(&format!("@rx {pattern}")).matches(value, b"", Some(&mut caps)));
                let found = re.find(value).map(|m| m.as_bytes().to_vec());
                assert_eq!(Some(caps[0].clone()), found, "{pattern} on {value:?}");
                assert_eq!(caps.len(), 1);
            }
        }
        assert!(!hit(&op("!@rx ^.*$"), "anything", ""));
    }

    #[test]
    fn within_finds_a_value_anywhere_in_the_list() {
        let list = b"/content-encoding/ /proxy/ /if/ /x-http-method/";
        for needle in
            [&b""[..], b"/", b"x", b"/if/", b"/proxy/", b"/x-http-method/", b"ing/ /pr", b"/i", b"/x-http-method/ "]
        {
            assert_eq!(within(list, needle), memchr::memmem::find(list, needle).is_some(), "{needle:?}");
        }
        assert!(!within(list, b"/accept/") && !within(b"", b"/a") && !within(b"a", b"ab"));
        assert!(within(b"ab", b"ab") && within(b"xab", b"ab"));
        let long = [b"-".repeat(2000), b"/found/".to_vec()].concat();
        assert!(within(&long, b"/found/") && !within(&long, b"/lost/"));
        assert!(hit(&op("@within GET POST"), "POST", "GET POST") && !hit(&op("@within GET"), "PUT", "GET"));
    }

    #[test]
    fn phrase_match_is_case_insensitive() {
        let o = op("@pm foo BAR");
        assert!(hit(&o, "xxbarxx", ""));
        assert!(!hit(&o, "baz", ""));
    }

    #[test]
    fn string_and_number_operators() {
        assert!(hit(&op("@within %{tx.m}"), "GET", "GET POST"));
        assert!(!hit(&op("!@within x"), "GET", "GET POST"));
        assert!(hit(&op("@streq a"), "a", "a"));
        assert!(hit(&op("@beginsWith a"), "abc", "a"));
        assert!(hit(&op("@endsWith c"), "abc", "c"));
        assert!(hit(&op("@contains b"), "abc", "b"));
        assert!(hit(&op("@containsWord b"), "a b c", "b"));
        assert!(!hit(&op("@containsWord b"), "abc", "b"));
        assert!(hit(&op("@gt 5"), "10", "5"));
        assert!(hit(&op("@lt 5"), "", "5"));
        assert!(hit(&op("@eq 0"), "0", "0"));
        assert!(hit(&op("@ge 3"), "3abc", "3"));
        assert_eq!(leading_int(b" -12x"), -12);
    }

    #[test]
    fn validators() {
        let o = op("@validateByteRange 32-126,9");
        assert!(!hit(&o, "abc\t", ""));
        assert!(hit(&o, "abc\n", ""));
        assert!(hit(&op("@validateUrlEncoding"), "a%zz", ""));
        assert!(!hit(&op("@validateUrlEncoding"), "a%20", ""));
        assert!(o.matches(b"\xc0\xaf", b"", None));
        assert!(op("@validateUtf8Encoding").matches(b"\xc0\xaf", b"", None));
        assert!(!op("@validateUtf8Encoding").matches("é".as_bytes(), b"", None));
    }

    #[test]
    fn libinjection_and_ip() {
        assert!(hit(&op("@detectSQLi"), "1' OR '1'='1", ""));
        assert!(!hit(&op("@detectSQLi"), "hello world", ""));
        assert!(hit(&op("@detectXSS"), "<script>alert(1)</script>", ""));
        assert!(!hit(&op("@detectXSS"), "hello", ""));
        let o = op("@ipMatch 10.0.0.0/8,192.168.1.1,::1");
        assert!(hit(&o, "10.1.2.3", "") && hit(&o, "::1", "") && !hit(&o, "11.0.0.1", ""));
    }

    #[test]
    fn detect_sqli_captures_the_fingerprint_of_the_match() {
        let o = op("@detectSQLi");
        for input in ["1' OR '1'='1", "1 UNION SELECT password FROM users", "\" or 1=1 -- ", "1;DROP TABLE x"] {
            let mut caps = Vec::new();
            assert!(o.matches(input.as_bytes(), b"", Some(&mut caps)), "{input}");
            let expected = libinjectionrs::detect_sqli(input.as_bytes()).fingerprint.unwrap();
            assert_eq!(caps, vec![expected.as_str().as_bytes().to_vec()], "{input}");
        }
    }

    #[test]
    fn captures_replace_the_previous_ones_in_reused_buffers() {
        let mut caps = Vec::new();
        assert!(op("@rx (a)(b)?(c)").matches(b"zac", b"", Some(&mut caps)));
        assert_eq!(caps, vec![b"ac".to_vec(), b"a".to_vec(), Vec::new(), b"c".to_vec()]);
        assert!(op("@rx x+").matches(b"axxb", b"", Some(&mut caps)));
        assert_eq!(caps, vec![b"xx".to_vec()], "fewer groups: the old ones are gone");
        assert!(!op("@rx q").matches(b"axxb", b"", Some(&mut caps)));
        assert_eq!(caps, vec![b"xx".to_vec()], "no match leaves them");
        assert!(op("@pm foo bar").matches(b"a bar", b"", Some(&mut caps)));
        assert_eq!(caps, vec![b"bar".to_vec()]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The prefilter's soundness for the byte-set operators: a value they flag holds one
        /// of their literals.
        #[test]
        fn a_flagged_value_holds_a_literal(value in proptest::prop_oneof![
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            proptest::strategy::Strategy::prop_map("[<>=a-z/ \"']{0,12}", String::into_bytes),
        ]) {
            for text in ["@validateByteRange 1-255", "@validateByteRange 9,10,13,32-126,128-255",
                "@validateByteRange 32-64", "@validateUtf8Encoding", "@detectXSS"] {
                let o = op(text);
                if !o.matches(&value, b"", None) {
                    continue;
                }
                let lower = value.to_ascii_lowercase();
                let set = o.literals().unwrap();
                proptest::prop_assert!(
                    set.iter().any(|l| lower.windows(l.len()).any(|w| w == l.as_slice())),
                    "{} flags {:?} but holds none of {:?}", text, value, set
                );
            }
            // The XSS literals are the screen tests/xss_screen.rs checks against libinjection.
            let xss = op("@detectXSS").literals().unwrap();
            let holds = xss.iter().any(|l| value.windows(l.len()).any(|w| w == l.as_slice()));
            proptest::prop_assert_eq!(holds, may_be_xss(&value));
        }
    }

    #[test]
    fn unknown_and_unsupported_operators_are_errors() {
        assert!(Operator::parse("@bogus x", Path::new(".")).unwrap_err().contains("unknown operator"));
        assert!(Operator::parse("@rbl x", Path::new(".")).unwrap_err().contains("not supported"));
        assert!(Operator::parse("@rx (", Path::new(".")).is_err());
    }
}
