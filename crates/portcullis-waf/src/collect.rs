//! Enumerates the values a target names: from the parsed request (borrowed) and from the
//! transaction's own variables (TX, MATCHED_VARS, ...).

use crate::actions::RuleRef;
use crate::request::{Parsed, Request, Response};
use crate::rules::Rule;
use crate::tx::Tx;
use crate::vars::{Selector, Target, Var};
use std::borrow::Cow;

/// One value to inspect: which variable and member it came from, and the bytes.
#[derive(Debug, Clone)]
pub struct Item<'s> {
    pub var: Var,
    pub key: Option<Cow<'s, [u8]>>,
    pub value: Cow<'s, [u8]>,
}

/// The request-side data, immutable while rules run.
#[derive(Debug, Default)]
pub struct Data<'a> {
    pub req: Request<'a>,
    pub parsed: Parsed<'a>,
    pub resp: Option<Response<'a>>,
}

/// The transaction's mutable variables that targets can name.
#[derive(Debug, Clone)]
pub struct Vars {
    /// TX, keys lower-case.
    pub tx: Tx,
    pub matched_var: Option<(Vec<u8>, Vec<u8>)>,
    pub matched_vars: Pairs,
    pub rule_id: u32,
    pub time_epoch: u64,
}

impl Default for Vars {
    /// Empty, without a table (see [`Vars::with_room`]).
    fn default() -> Self {
        Vars { tx: Tx::default(), matched_var: None, matched_vars: Pairs::default(), rule_id: 0, time_epoch: 0 }
    }
}

impl Vars {
    /// With room for what CRS sets at PL1 without growing.
    pub fn with_room() -> Self {
        Vars { tx: Tx::with_capacity(128), ..Vars::default() }
    }

    /// Empties everything, keeping the allocations, for the next transaction; false when they
    /// grew too large to be worth keeping.
    pub fn clear(&mut self) -> bool {
        if self.matched_vars.heavy() || !self.tx.clear() {
            return false;
        }
        self.matched_var = None;
        self.matched_vars.clear();
        self.rule_id = 0;
        self.time_epoch = 0;
        true
    }
}

/// (name, value) byte pairs in one buffer: cleared and refilled per rule without freeing.
#[derive(Debug, Default)]
pub struct Pairs {
    bytes: Vec<u8>,
    /// Per pair: where its name ends and where its value ends in `bytes`.
    ends: Vec<(usize, usize)>,
}

impl Clone for Pairs {
    fn clone(&self) -> Self {
        Pairs { bytes: self.bytes.clone(), ends: self.ends.clone() }
    }

    /// Keeps this one's buffers (a transaction starting from the prelude's copy).
    fn clone_from(&mut self, source: &Self) {
        self.bytes.clone_from(&source.bytes);
        self.ends.clone_from(&source.ends);
    }
}

impl Pairs {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Holds more than a reused buffer should keep (a match on a large body).
    pub fn heavy(&self) -> bool {
        self.bytes.capacity() > crate::cache::KEEP_BYTES
    }

    /// Adds a pair whose name is the concatenation of `name`'s parts.
    pub fn push(&mut self, name: &[&[u8]], value: &[u8]) {
        for part in name {
            self.bytes.extend_from_slice(part);
        }
        let name_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ends.push((name_end, self.bytes.len()));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, end)| {
            let name = self.bytes.get(start..name_end).unwrap_or_default();
            let value = self.bytes.get(name_end..end).unwrap_or_default();
            start = end;
            (name, value)
        })
    }
}

/// `ARGS:id`: a variable's name and, when it has one, the member's key, as name parts.
pub fn name_parts(var: Var, key: Option<&[u8]>) -> [&[u8]; 3] {
    match key {
        Some(k) => [var.name().as_bytes(), b":", k],
        None => [var.name().as_bytes(), b"", b""],
    }
}

impl Vars {
    pub fn tx_get(&self, key: &str) -> Option<&[u8]> {
        self.tx.get(key)
    }

    pub fn tx_set(&mut self, key: &str, value: &[u8]) {
        self.tx.set(key, value);
    }

    pub fn tx_remove(&mut self, key: &str) {
        self.tx.remove(key);
    }
}

fn pairs<'s, K: AsRef<[u8]> + ?Sized + 's, V: AsRef<[u8]> + ?Sized + 's>(
    var: Var,
    items: impl Iterator<Item = (&'s K, &'s V)>,
    names: bool,
    sel: &Selector,
    out: &mut Vec<Item<'s>>,
) {
    for (k, v) in items {
        let k = k.as_ref();
        if !sel.matches(k) {
            continue;
        }
        let value = if names { k } else { v.as_ref() };
        out.push(Item { var, key: Some(Cow::Borrowed(k)), value: Cow::Borrowed(value) });
    }
}

fn scalar<'s>(var: Var, value: Cow<'s, [u8]>, out: &mut Vec<Item<'s>>) {
    out.push(Item { var, key: None, value });
}

fn number<'s>(var: Var, n: usize, out: &mut Vec<Item<'s>>) {
    scalar(var, Cow::Owned(n.to_string().into_bytes()), out);
}

/// Appends the values of `target` (ignoring `count` and `exclude`, which the caller handles).
pub fn values<'s>(data: &'s Data<'_>, vars: &'s Vars, target: &Target, out: &mut Vec<Item<'s>>) {
    let p = &data.parsed;
    let r = &data.req;
    let sel = &target.selector;
    let args = || p.args_get.iter().chain(p.args_post.iter()).map(|(k, v)| (k.as_ref(), v.as_ref()));
    let headers = |h: &'s [(&'s [u8], &'s [u8])]| h.iter().map(|(k, v)| (*k, *v));
    match target.var {
        Var::Args => pairs(target.var, args(), false, sel, out),
        Var::ArgsNames => pairs(target.var, args(), true, sel, out),
        Var::ArgsGet => pairs(target.var, p.args_get.iter().map(|(k, v)| (k.as_ref(), v.as_ref())), false, sel, out),
        Var::ArgsGetNames => {
            pairs(target.var, p.args_get.iter().map(|(k, v)| (k.as_ref(), v.as_ref())), true, sel, out)
        }
        Var::ArgsPost => pairs(target.var, p.args_post.iter().map(|(k, v)| (k.as_ref(), v.as_ref())), false, sel, out),
        Var::ArgsPostNames => {
            pairs(target.var, p.args_post.iter().map(|(k, v)| (k.as_ref(), v.as_ref())), true, sel, out)
        }
        Var::ArgsCombinedSize => number(target.var, args().map(|(k, v)| k.len() + v.len()).sum(), out),
        Var::RequestHeaders => pairs(target.var, headers(&r.headers), false, sel, out),
        Var::RequestHeadersNames => pairs(target.var, headers(&r.headers), true, sel, out),
        Var::RequestCookies => pairs(target.var, p.cookies.iter().map(|(k, v)| (*k, *v)), false, sel, out),
        Var::RequestCookiesNames => pairs(target.var, p.cookies.iter().map(|(k, v)| (*k, *v)), true, sel, out),
        Var::Files => pairs(target.var, p.files.iter().map(|(k, v)| (k.as_ref(), v.as_ref())), false, sel, out),
        Var::FilesNames => pairs(target.var, p.files.iter().map(|(k, v)| (k.as_ref(), v.as_ref())), true, sel, out),
        Var::FilesSizes => {
            for (k, n) in &p.files_sizes {
                if sel.matches(k) {
                    out.push(Item {
                        var: target.var,
                        key: Some(Cow::Borrowed(k)),
                        value: Cow::Owned(n.to_string().into_bytes()),
                    });
                }
            }
        }
        Var::FilesCombinedSize => number(target.var, p.files_sizes.iter().map(|(_, n)| n).sum(), out),
        Var::MultipartPartHeaders => {
            pairs(target.var, p.part_headers.iter().map(|(k, v)| (k.as_ref(), v.as_ref())), false, sel, out)
        }
        Var::Xml => {
            let list = match sel {
                Selector::XPath(x) if x.contains('@') => &p.xml_attrs,
                _ => &p.xml_text,
            };
            for v in list {
                scalar(target.var, Cow::Borrowed(v), out);
            }
        }
        Var::Tx => {
            if let Selector::Key(k) = sel {
                if let Some((k, v)) = vars.tx.get_key_value(k) {
                    out.push(Item { var: Var::Tx, key: Some(Cow::Borrowed(k)), value: Cow::Borrowed(v) });
                }
                return;
            }
            let lines = vars.tx.names_have_newline();
            for (k, v) in vars.tx.iter() {
                if sel.matches_in(k, lines) {
                    out.push(Item { var: Var::Tx, key: Some(Cow::Borrowed(k)), value: Cow::Borrowed(v) });
                }
            }
        }
        Var::MatchedVar => {
            if let Some((_, v)) = &vars.matched_var {
                scalar(target.var, Cow::Borrowed(v), out);
            }
        }
        Var::MatchedVarName => {
            if let Some((n, _)) = &vars.matched_var {
                scalar(target.var, Cow::Borrowed(n), out);
            }
        }
        Var::MatchedVars => pairs(target.var, vars.matched_vars.iter(), false, sel, out),
        Var::MatchedVarsNames => pairs(target.var, vars.matched_vars.iter(), true, sel, out),
        Var::QueryString => scalar(target.var, Cow::Borrowed(p.query), out),
        Var::RemoteAddr => scalar(target.var, Cow::Borrowed(r.remote_addr.as_bytes()), out),
        Var::RemotePort => number(target.var, usize::from(r.remote_port), out),
        Var::ServerPort => number(target.var, usize::from(r.server_port), out),
        Var::ReqbodyError => scalar(target.var, Cow::Borrowed(if p.body_error.is_some() { b"1" } else { b"0" }), out),
        Var::ReqbodyErrorMsg => {
            scalar(target.var, Cow::Borrowed(p.body_error.as_deref().unwrap_or_default().as_bytes()), out)
        }
        Var::ReqbodyProcessor => {
            scalar(target.var, Cow::Borrowed(p.processor.map_or("", |b| b.name()).as_bytes()), out)
        }
        Var::RequestBasename => scalar(target.var, Cow::Borrowed(&p.basename), out),
        Var::RequestFilename => scalar(target.var, Cow::Borrowed(&p.filename), out),
        Var::RequestBody if p.body_variable => scalar(target.var, Cow::Borrowed(p.body), out),
        Var::RequestBodyLength => number(target.var, p.body.len(), out),
        Var::RequestLine => scalar(target.var, Cow::Borrowed(&p.request_line), out),
        Var::RequestMethod => scalar(target.var, Cow::Borrowed(r.method), out),
        Var::RequestProtocol => scalar(target.var, Cow::Borrowed(r.protocol), out),
        Var::RequestUri => scalar(target.var, Cow::Borrowed(p.uri), out),
        Var::RequestUriRaw => scalar(target.var, Cow::Borrowed(r.uri), out),
        Var::UniqueId => scalar(target.var, Cow::Borrowed(r.unique_id.as_bytes()), out),
        Var::TimeEpoch => number(target.var, vars.time_epoch as usize, out),
        Var::Rule => {
            if matches!(sel, Selector::Key(k) if &**k == "id") {
                number(target.var, vars.rule_id as usize, out);
            }
        }
        Var::ResponseBody
        | Var::ResponseHeaders
        | Var::ResponseHeadersNames
        | Var::ResponseStatus
        | Var::ResponseProtocol
        | Var::ResponseContentType
        | Var::ResponseContentLength => {
            if let Some(resp) = &data.resp {
                response(target.var, resp, sel, out);
            }
        }
        // Persistent collections, GEO and the remaining server variables hold nothing here.
        _ => {}
    }
}

fn response<'s>(var: Var, resp: &'s Response<'_>, sel: &Selector, out: &mut Vec<Item<'s>>) {
    let headers = resp.headers.iter().map(|(k, v)| (*k, *v));
    match var {
        Var::ResponseBody => scalar(var, Cow::Borrowed(resp.body), out),
        Var::ResponseHeaders => pairs(var, headers, false, sel, out),
        Var::ResponseHeadersNames => pairs(var, headers, true, sel, out),
        Var::ResponseStatus => number(var, usize::from(resp.status), out),
        Var::ResponseProtocol => scalar(var, Cow::Borrowed(resp.protocol), out),
        Var::ResponseContentType => {
            if let Some((_, v)) = resp.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(b"content-type")) {
                scalar(var, Cow::Borrowed(*v), out);
            }
        }
        Var::ResponseContentLength => number(var, resp.body.len(), out),
        _ => {}
    }
}

/// Whether `item` is removed by an exclusion target of the same variable.
pub fn excluded(item: &Item<'_>, exclusions: &[&Target]) -> bool {
    exclusions.iter().any(|t| {
        t.var == item.var
            && match (&t.selector, item.key.as_deref()) {
                (Selector::All, _) => true,
                (s, Some(k)) => s.matches(k),
                (_, None) => false,
            }
    })
}

/// Removed-target lists from `ctl:ruleRemoveTarget*` that apply to a rule.
pub fn removed_for<'t>(removed: &'t [(RuleRef, Vec<Target>)], rule: &Rule) -> impl Iterator<Item = &'t Target> {
    removed.iter().filter(move |(r, _)| r.covers(rule)).flat_map(|(_, t)| t.iter())
}
