//! Variables (collections and scalars) a rule can inspect, and the target list syntax
//! `ARGS|!ARGS:foo|&REQUEST_HEADERS:Host|REQUEST_COOKIES:/^sess/|XML:/*`.

use regex::bytes::Regex;

/// A variable ModSecurity defines. Collections hold (name, value) pairs and take selectors;
/// the others hold one value (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    Args,
    ArgsNames,
    ArgsGet,
    ArgsGetNames,
    ArgsPost,
    ArgsPostNames,
    ArgsCombinedSize,
    Duration,
    Env,
    Files,
    FilesCombinedSize,
    FilesNames,
    FilesSizes,
    Geo,
    Global,
    Ip,
    MatchedVar,
    MatchedVarName,
    MatchedVars,
    MatchedVarsNames,
    MultipartBoundaryQuoted,
    MultipartBoundaryWhitespace,
    MultipartDataAfter,
    MultipartDataBefore,
    MultipartFileLimitExceeded,
    MultipartHeaderFolding,
    MultipartInvalidHeaderFolding,
    MultipartInvalidPart,
    MultipartInvalidQuoting,
    MultipartLfLine,
    MultipartMissingSemicolon,
    MultipartPartHeaders,
    MultipartStrictError,
    MultipartUnmatchedBoundary,
    QueryString,
    RemoteAddr,
    RemotePort,
    ReqbodyError,
    ReqbodyErrorMsg,
    ReqbodyProcessor,
    RequestBasename,
    RequestBody,
    RequestBodyLength,
    RequestCookies,
    RequestCookiesNames,
    RequestFilename,
    RequestHeaders,
    RequestHeadersNames,
    RequestLine,
    RequestMethod,
    RequestProtocol,
    RequestUri,
    RequestUriRaw,
    ResponseBody,
    ResponseContentLength,
    ResponseContentType,
    ResponseHeaders,
    ResponseHeadersNames,
    ResponseProtocol,
    ResponseStatus,
    Rule,
    ServerAddr,
    ServerName,
    ServerPort,
    Session,
    Time,
    TimeEpoch,
    Tx,
    UniqueId,
    User,
    Webserver,
    Xml,
}

const TABLE: [(&str, Var); 71] = [
    ("ARGS", Var::Args),
    ("ARGS_NAMES", Var::ArgsNames),
    ("ARGS_GET", Var::ArgsGet),
    ("ARGS_GET_NAMES", Var::ArgsGetNames),
    ("ARGS_POST", Var::ArgsPost),
    ("ARGS_POST_NAMES", Var::ArgsPostNames),
    ("ARGS_COMBINED_SIZE", Var::ArgsCombinedSize),
    ("DURATION", Var::Duration),
    ("ENV", Var::Env),
    ("FILES", Var::Files),
    ("FILES_COMBINED_SIZE", Var::FilesCombinedSize),
    ("FILES_NAMES", Var::FilesNames),
    ("FILES_SIZES", Var::FilesSizes),
    ("GEO", Var::Geo),
    ("GLOBAL", Var::Global),
    ("IP", Var::Ip),
    ("MATCHED_VAR", Var::MatchedVar),
    ("MATCHED_VAR_NAME", Var::MatchedVarName),
    ("MATCHED_VARS", Var::MatchedVars),
    ("MATCHED_VARS_NAMES", Var::MatchedVarsNames),
    ("MULTIPART_BOUNDARY_QUOTED", Var::MultipartBoundaryQuoted),
    ("MULTIPART_BOUNDARY_WHITESPACE", Var::MultipartBoundaryWhitespace),
    ("MULTIPART_DATA_AFTER", Var::MultipartDataAfter),
    ("MULTIPART_DATA_BEFORE", Var::MultipartDataBefore),
    ("MULTIPART_FILE_LIMIT_EXCEEDED", Var::MultipartFileLimitExceeded),
    ("MULTIPART_HEADER_FOLDING", Var::MultipartHeaderFolding),
    ("MULTIPART_INVALID_HEADER_FOLDING", Var::MultipartInvalidHeaderFolding),
    ("MULTIPART_INVALID_PART", Var::MultipartInvalidPart),
    ("MULTIPART_INVALID_QUOTING", Var::MultipartInvalidQuoting),
    ("MULTIPART_LF_LINE", Var::MultipartLfLine),
    ("MULTIPART_MISSING_SEMICOLON", Var::MultipartMissingSemicolon),
    ("MULTIPART_PART_HEADERS", Var::MultipartPartHeaders),
    ("MULTIPART_STRICT_ERROR", Var::MultipartStrictError),
    ("MULTIPART_UNMATCHED_BOUNDARY", Var::MultipartUnmatchedBoundary),
    ("QUERY_STRING", Var::QueryString),
    ("REMOTE_ADDR", Var::RemoteAddr),
    ("REMOTE_PORT", Var::RemotePort),
    ("REQBODY_ERROR", Var::ReqbodyError),
    ("REQBODY_ERROR_MSG", Var::ReqbodyErrorMsg),
    ("REQBODY_PROCESSOR", Var::ReqbodyProcessor),
    ("REQUEST_BASENAME", Var::RequestBasename),
    ("REQUEST_BODY", Var::RequestBody),
    ("REQUEST_BODY_LENGTH", Var::RequestBodyLength),
    ("REQUEST_COOKIES", Var::RequestCookies),
    ("REQUEST_COOKIES_NAMES", Var::RequestCookiesNames),
    ("REQUEST_FILENAME", Var::RequestFilename),
    ("REQUEST_HEADERS", Var::RequestHeaders),
    ("REQUEST_HEADERS_NAMES", Var::RequestHeadersNames),
    ("REQUEST_LINE", Var::RequestLine),
    ("REQUEST_METHOD", Var::RequestMethod),
    ("REQUEST_PROTOCOL", Var::RequestProtocol),
    ("REQUEST_URI", Var::RequestUri),
    ("REQUEST_URI_RAW", Var::RequestUriRaw),
    ("RESPONSE_BODY", Var::ResponseBody),
    ("RESPONSE_CONTENT_LENGTH", Var::ResponseContentLength),
    ("RESPONSE_CONTENT_TYPE", Var::ResponseContentType),
    ("RESPONSE_HEADERS", Var::ResponseHeaders),
    ("RESPONSE_HEADERS_NAMES", Var::ResponseHeadersNames),
    ("RESPONSE_PROTOCOL", Var::ResponseProtocol),
    ("RESPONSE_STATUS", Var::ResponseStatus),
    ("RULE", Var::Rule),
    ("SERVER_ADDR", Var::ServerAddr),
    ("SERVER_NAME", Var::ServerName),
    ("SERVER_PORT", Var::ServerPort),
    ("SESSION", Var::Session),
    ("TIME", Var::Time),
    ("TIME_EPOCH", Var::TimeEpoch),
    ("TX", Var::Tx),
    ("UNIQUE_ID", Var::UniqueId),
    ("USER", Var::User),
    ("WEBSERVER_ERROR_LOG", Var::Webserver),
];

impl Var {
    pub fn parse(name: &str) -> Option<Var> {
        if name.eq_ignore_ascii_case("XML") {
            return Some(Var::Xml);
        }
        TABLE.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    /// The variable whose discriminant (`var as u8`) is `n`.
    pub fn from_index(n: u8) -> Option<Var> {
        if n == Var::Xml as u8 {
            return Some(Var::Xml);
        }
        TABLE.get(usize::from(n)).map(|(_, v)| *v).filter(|v| *v as u8 == n)
    }

    pub fn name(self) -> &'static str {
        if self == Var::Xml {
            return "XML";
        }
        TABLE.iter().find(|(_, v)| *v == self).map_or("?", |(n, _)| n)
    }
}

/// Which members of a collection a target takes.
#[derive(Debug, Clone)]
pub enum Selector {
    All,
    /// An exact member name, compared case-insensitively; stored lower-case.
    Key(Box<str>),
    /// Boxed: a rule's targets are walked on every evaluation, and the regex would make
    /// every target (most are `All` or `Key`) nearly three times as large.
    Regex(Box<KeyRegex>),
    /// An XPath expression on `XML`.
    XPath(Box<str>),
}

impl Selector {
    pub fn matches(&self, key: &[u8]) -> bool {
        self.matches_in(key, true)
    }

    /// [`Selector::matches`] for a key that holds a newline only if `lines` (see
    /// [`KeyRegex::is_match_in`]).
    pub fn matches_in(&self, key: &[u8], lines: bool) -> bool {
        match self {
            Selector::All | Selector::XPath(_) => true,
            Selector::Key(k) => k.as_bytes().eq_ignore_ascii_case(key),
            Selector::Regex(re) => re.is_match_in(key, lines),
        }
    }

    fn same_as(&self, other: &Selector) -> bool {
        match (self, other) {
            (Selector::All, Selector::All) => true,
            (Selector::Key(a), Selector::Key(b)) | (Selector::XPath(a), Selector::XPath(b)) => a == b,
            (Selector::Regex(a), Selector::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub var: Var,
    pub selector: Selector,
    /// `&VAR`: the number of members instead of their values.
    pub count: bool,
    /// `!VAR:key`: removes members from the other targets of the same variable.
    pub exclude: bool,
}

impl Target {
    /// True when `other` names the same variable and selector (used to drop a target).
    pub fn same_as(&self, other: &Target) -> bool {
        self.var == other.var && self.count == other.count && self.selector.same_as(&other.selector)
    }
}

/// A selector's regular expression (case-insensitive, byte semantics). The common shapes
/// `^name_prefix` and `name_part.*` are answered by a literal comparison: CRS runs its
/// `TX:/^header_name_920450_/`-style selectors over every TX variable of every request.
#[derive(Debug, Clone)]
pub struct KeyRegex {
    re: Regex,
    /// (anchored at a line start, lower-case literal) when the expression is just that.
    literal: Option<(bool, Vec<u8>)>,
}

impl KeyRegex {
    pub fn is_match(&self, key: &[u8]) -> bool {
        self.is_match_in(key, true)
    }

    /// [`KeyRegex::is_match`], told whether `key` may hold a newline (false: it holds none,
    /// so a `^` can only match at its start; TX knows that of all its names at once).
    pub fn is_match_in(&self, key: &[u8], lines: bool) -> bool {
        let Some((anchored, lit)) = &self.literal else { return self.re.is_match(key) };
        // The literal is lower-case; a byte loop ends at the first difference, which for
        // most keys is the first byte.
        let at = |i: usize| {
            key.get(i..i + lit.len()).is_some_and(|w| w.iter().zip(lit).all(|(a, b)| a.to_ascii_lowercase() == *b))
        };
        if *anchored {
            // Multi-line mode: `^` also matches after a newline.
            // (A key no longer than the literal holds it only at the start.)
            at(0) || (lines && key.len() > lit.len() && memchr::memchr_iter(b'\n', key).any(|i| at(i + 1)))
        } else {
            (0..key.len().saturating_sub(lit.len()) + 1).any(at)
        }
    }

    pub fn as_str(&self) -> &str {
        self.re.as_str()
    }
}

/// `^lit` or `lit` with `lit` made of letters, digits, `_` and `-`, followed by any number of
/// optional parts (`.*`, `x*`, `x?`: a search for the rest matches where `lit` does, as in
/// CRS's `TX:/MULTIPART_HEADERS_CONTENT_TYPES_*/` and `TX:/paramcounter_.*/`).
fn plain_literal(pattern: &str) -> Option<(bool, Vec<u8>)> {
    let (anchored, rest) = match pattern.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, pattern),
    };
    let plain_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let mut lit = rest;
    while let Some(&[x, b'*' | b'?']) = lit.as_bytes().get(lit.len().saturating_sub(2)..) {
        if x != b'.' && !plain_byte(x) {
            break;
        }
        lit = lit.get(..lit.len() - 2).unwrap_or_default();
    }
    let plain = !lit.is_empty() && lit.bytes().all(plain_byte);
    plain.then(|| (anchored, lit.to_ascii_lowercase().into_bytes()))
}

/// Compiles a selector regular expression with ModSecurity's byte semantics.
pub fn selector_regex(pattern: &str) -> Result<KeyRegex, String> {
    let re = crate::operator::compile_regex(pattern, true)?;
    Ok(KeyRegex { re, literal: plain_literal(pattern) })
}

/// Parses a `|`-separated target list. A `/regex/` or `'quoted'` selector may contain `|`.
pub fn parse_targets(text: &str) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (target, after) = parse_one(rest)?;
        out.push(target);
        rest = after.trim_start();
        if let Some(r) = rest.strip_prefix('|') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("unexpected text in variable list: {rest}"));
        }
    }
    if out.is_empty() {
        return Err("empty variable list".into());
    }
    Ok(out)
}

fn parse_one(text: &str) -> Result<(Target, &str), String> {
    let mut s = text;
    let mut exclude = false;
    let mut count = false;
    if let Some(r) = s.strip_prefix('!') {
        exclude = true;
        s = r;
    }
    if let Some(r) = s.strip_prefix('&') {
        count = true;
        s = r;
    }
    let name_end = s.find([':', '|']).unwrap_or(s.len());
    let (name, after) = s.split_at(name_end);
    let var = Var::parse(name.trim()).ok_or_else(|| format!("unknown variable {}", name.trim()))?;
    let Some(sel_text) = after.strip_prefix(':') else {
        return Ok((Target { var, selector: Selector::All, count, exclude }, after));
    };
    let (selector, rest) = if var == Var::Xml {
        let end = sel_text.find('|').unwrap_or(sel_text.len());
        let (xpath, rest) = sel_text.split_at(end);
        (Selector::XPath(xpath.into()), rest)
    } else if let Some(body) = sel_text.strip_prefix('/') {
        let end = closing(body, '/').ok_or("unterminated /regex/ selector")?;
        let (pattern, rest) = body.split_at(end);
        (Selector::Regex(Box::new(selector_regex(pattern)?)), rest.get(1..).unwrap_or_default())
    } else if let Some(body) = sel_text.strip_prefix('\'') {
        let end = closing(body, '\'').ok_or("unterminated quoted selector")?;
        let (inner, rest) = body.split_at(end);
        let rest = rest.get(1..).unwrap_or_default();
        match inner.strip_prefix('/').and_then(|p| p.strip_suffix('/')) {
            Some(pattern) => (Selector::Regex(Box::new(selector_regex(pattern)?)), rest),
            None => (Selector::Key(inner.to_ascii_lowercase().into()), rest),
        }
    } else {
        let end = sel_text.find('|').unwrap_or(sel_text.len());
        let (key, rest) = sel_text.split_at(end);
        (Selector::Key(key.trim().to_ascii_lowercase().into()), rest)
    };
    Ok((Target { var, selector, count, exclude }, rest))
}

/// Index of the first unescaped `delim`.
fn closing(s: &str, delim: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == delim {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_key_expression_matches_as_its_regex_does() {
        let keys: [&[u8]; 9] = [
            b"header_name_x",
            b"HEADER_NAME_x",
            b"x_header_name",
            b"header_nam",
            b"",
            b"a\nheader_name_b",
            b"h",
            b"header_name_",
            b"\nheader_name",
        ];
        for pattern in ["^header_name_", "header_name", "^header_name_.*", "paramcounter_.*"] {
            let k = selector_regex(pattern).unwrap();
            assert!(k.literal.is_some(), "{pattern} is a plain literal");
            let full = KeyRegex { re: k.re.clone(), literal: None };
            for key in keys {
                assert_eq!(k.is_match(key), full.is_match(key), "{pattern} on {key:?}");
                if !key.contains(&b'\n') {
                    assert_eq!(k.is_match_in(key, false), full.is_match(key), "{pattern} on {key:?}");
                }
            }
        }
    }

    #[test]
    fn target_lists() {
        let t = parse_targets("REQUEST_COOKIES|!REQUEST_COOKIES:/__utm|_ga/|&ARGS:Foo|XML:/*|TX:'/^x|y$/'").unwrap();
        assert_eq!(t.len(), 5);
        assert!(t[1].exclude && matches!(&t[1].selector, Selector::Regex(r) if r.is_match(b"_ga")));
        assert!(t[2].count && matches!(&t[2].selector, Selector::Key(k) if &**k == "foo"));
        assert!(matches!(&t[3].selector, Selector::XPath(x) if &**x == "/*"));
        assert!(matches!(&t[4].selector, Selector::Regex(r) if r.is_match(b"y")));
        assert!(parse_targets("NOPE").is_err());
        // The literal fast path answers as the expression does.
        for (pattern, keys) in [
            ("^_pk_ref", &["_pk_ref.1", "_PK_REF", "x_pk_ref", "a\n_pk_ref", "_pk_re", ""][..]),
            ("paramcounter_.*", &["tx_paramcounter_a", "PARAMCOUNTER_", "paramcounter", "x"][..]),
            ("^header_name_920450_", &["header_name_920450_accept", "header_name_920451_x"][..]),
            (
                "MULTIPART_HEADERS_CONTENT_TYPES_*",
                &["multipart_headers_content_types", "x_multipart_headers_content_types__1", "multipart_headers"][..],
            ),
            ("^ab?c*", &["a", "abc", "xa", "x\nab", "b"][..]),
        ] {
            let fast = selector_regex(pattern).unwrap();
            assert!(fast.literal.is_some(), "{pattern}");
            let slow = crate::operator::compile_regex(pattern, true).unwrap();
            for key in keys {
                assert_eq!(fast.is_match(key.as_bytes()), slow.is_match(key.as_bytes()), "{pattern} on {key:?}");
            }
        }
        assert!(selector_regex("^pbjs-\\w+$").unwrap().literal.is_none());
        assert!(selector_regex("^.*").unwrap().literal.is_none());
        assert!(selector_regex("a\\*").unwrap().literal.is_none());
        assert!(parse_targets("ARGS:/open").is_err());
    }

    #[test]
    fn every_variable_comes_back_from_its_index() {
        for (_, v) in TABLE.iter().chain([("XML", Var::Xml)].iter()) {
            assert_eq!(Var::from_index(*v as u8), Some(*v));
        }
        assert_eq!(Var::from_index(Var::Xml as u8 + 1), None);
    }
}
