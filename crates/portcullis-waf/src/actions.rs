//! Rule actions (the quoted `id:...,phase:...` list): parsed into a typed record.

use crate::lexer::RawAction;
use crate::macros::Template;
use crate::transform::Transform;
use crate::vars::{Target, Var, parse_targets};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruptive {
    Pass,
    /// Whatever the phase's `SecDefaultAction` says (CRS: `pass`, so scoring decides).
    Block,
    Deny,
    Drop,
    Allow,
    Redirect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    On,
    DetectionOnly,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProcessor {
    UrlEncoded,
    Multipart,
    Json,
    Xml,
}

impl BodyProcessor {
    pub fn parse(s: &str) -> Option<BodyProcessor> {
        Some(match s.to_ascii_uppercase().as_str() {
            "URLENCODED" => BodyProcessor::UrlEncoded,
            "MULTIPART" => BodyProcessor::Multipart,
            "JSON" => BodyProcessor::Json,
            "XML" => BodyProcessor::Xml,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            BodyProcessor::UrlEncoded => "URLENCODED",
            BodyProcessor::Multipart => "MULTIPART",
            BodyProcessor::Json => "JSON",
            BodyProcessor::Xml => "XML",
        }
    }
}

/// Rules named by a `ctl:` or `SecRuleRemove*` action.
#[derive(Debug, Clone)]
pub enum RuleRef {
    Ids(Vec<(u32, u32)>),
    Tag(String),
    Msg(String),
}

impl RuleRef {
    pub fn parse_ids(text: &str) -> Result<RuleRef, String> {
        let mut ranges = Vec::new();
        for part in text.split([' ', ',']).filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let a: u32 = a.trim().parse().map_err(|_| format!("not a rule id: {part}"))?;
            let b: u32 = b.trim().parse().map_err(|_| format!("not a rule id: {part}"))?;
            ranges.push((a.min(b), a.max(b)));
        }
        if ranges.is_empty() {
            return Err("no rule id given".into());
        }
        Ok(RuleRef::Ids(ranges))
    }

    pub fn covers(&self, rule: &crate::rules::Rule) -> bool {
        match self {
            RuleRef::Ids(ranges) => ranges.iter().any(|(a, b)| (*a..=*b).contains(&rule.id)),
            RuleRef::Tag(t) => rule.actions.tags.contains(t),
            RuleRef::Msg(m) => rule.msg_literal() == Some(m.as_str()),
        }
    }
}

/// A rule's tags, with a one-word summary: once a `ctl:ruleRemoveTargetByTag` ran (CRS
/// 941010 does on most requests) every later rule is asked whether it has the tag, and the
/// summary answers no for most of them without reading the tags (each its own allocation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tags {
    names: Vec<String>,
    /// Bit `hash(tag) % 64` set for every tag.
    bits: u64,
}

impl Tags {
    fn bit(tag: &str) -> u64 {
        // FNV-1a: stable, and enough to spread tags over 64 bits.
        let h = tag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        1 << (h % 64)
    }

    pub fn push(&mut self, tag: String) {
        self.bits |= Tags::bit(&tag);
        self.names.push(tag);
    }

    pub fn contains(&self, tag: &str) -> bool {
        self.bits & Tags::bit(tag) != 0 && self.names.iter().any(|t| t == tag)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

#[derive(Debug, Clone)]
pub enum Ctl {
    RuleEngine(EngineMode),
    RuleRemove(RuleRef),
    RuleRemoveTarget(RuleRef, Vec<Target>),
    RequestBodyProcessor(BodyProcessor),
    ForceRequestBodyVariable(bool),
    RequestBodyAccess(bool),
    /// `auditEngine`/`auditLogParts`: Portcullis has no separate audit log; the WAF log line
    /// is always written for logged matches, so these have no effect.
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    Set,
    Add,
    Sub,
    Delete,
}

#[derive(Debug, Clone)]
pub struct SetVar {
    pub collection: Var,
    pub name: Template,
    pub op: SetOp,
    pub value: Template,
}

#[derive(Debug, Clone)]
pub enum Effect {
    SetVar(SetVar),
    Ctl(Ctl),
}

/// `repr(C)`: what evaluating a link and a full match read comes first (see [`crate::Rule`]).
#[derive(Debug, Clone, Default)]
#[repr(C)]
pub struct Actions {
    pub capture: bool,
    pub multi_match: bool,
    pub chain: bool,
    /// True when `t:none` appeared: transformations inherited from `SecDefaultAction` drop.
    pub t_none: bool,
    pub disruptive: Option<Disruptive>,
    pub log: Option<bool>,
    pub auditlog: Option<bool>,
    pub severity: Option<u8>,
    pub skip: Option<u32>,
    pub status: Option<u16>,
    pub phase: Option<u8>,
    pub id: Option<u32>,
    pub effects: Vec<Effect>,
    pub transforms: Vec<Transform>,
    pub msg: Option<Template>,
    pub logdata: Option<Template>,
    pub tags: Tags,
    pub ver: Option<String>,
    pub skip_after: Option<String>,
}

fn severity(s: &str) -> Result<u8, String> {
    const NAMES: [&str; 8] = ["EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"];
    if let Ok(n) = s.parse::<u8>()
        && n < 8
    {
        return Ok(n);
    }
    NAMES.iter().position(|n| n.eq_ignore_ascii_case(s)).map(|p| p as u8).ok_or_else(|| format!("unknown severity {s}"))
}

fn on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected On or Off, got {s}")),
    }
}

fn parse_setvar(value: &str) -> Result<SetVar, String> {
    let (delete, body) = match value.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, value),
    };
    let (lhs, rhs) = match body.split_once('=') {
        Some((l, r)) => (l, Some(r)),
        None => (body, None),
    };
    let (coll, name) = lhs.split_once('.').ok_or_else(|| format!("setvar needs collection.name: {value}"))?;
    let collection = Var::parse(coll.trim()).ok_or_else(|| format!("setvar: unknown collection {coll}"))?;
    let name = Template::parse(&name.trim().to_ascii_lowercase())?;
    let (op, value) = match (delete, rhs) {
        (true, _) => (SetOp::Delete, Template::default()),
        (false, None) => (SetOp::Set, Template::parse("1")?),
        (false, Some(r)) => {
            if let Some(v) = r.strip_prefix('+') {
                (SetOp::Add, Template::parse(v)?)
            } else if let Some(v) = r.strip_prefix('-') {
                (SetOp::Sub, Template::parse(v)?)
            } else {
                (SetOp::Set, Template::parse(r)?)
            }
        }
    };
    Ok(SetVar { collection, name, op, value })
}

fn parse_ctl(value: &str) -> Result<Ctl, String> {
    let (name, arg) = value.split_once('=').ok_or_else(|| format!("ctl needs name=value: {value}"))?;
    let arg = arg.trim();
    let target_of = |arg: &str| -> Result<(String, Vec<Target>), String> {
        let (what, targets) = arg.split_once(';').ok_or_else(|| format!("ctl:{name} needs rule;target"))?;
        Ok((what.to_string(), parse_targets(targets)?))
    };
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "ruleengine" => Ctl::RuleEngine(match arg.to_ascii_lowercase().as_str() {
            "on" => EngineMode::On,
            "off" => EngineMode::Off,
            "detectiononly" => EngineMode::DetectionOnly,
            _ => return Err(format!("ctl:ruleEngine: unknown mode {arg}")),
        }),
        "ruleremovebyid" => Ctl::RuleRemove(RuleRef::parse_ids(arg)?),
        "ruleremovebytag" => Ctl::RuleRemove(RuleRef::Tag(arg.to_string())),
        "ruleremovebymsg" => Ctl::RuleRemove(RuleRef::Msg(arg.to_string())),
        "ruleremovetargetbyid" => {
            let (ids, t) = target_of(arg)?;
            Ctl::RuleRemoveTarget(RuleRef::parse_ids(&ids)?, t)
        }
        "ruleremovetargetbytag" => {
            let (tag, t) = target_of(arg)?;
            Ctl::RuleRemoveTarget(RuleRef::Tag(tag), t)
        }
        "ruleremovetargetbymsg" => {
            let (msg, t) = target_of(arg)?;
            Ctl::RuleRemoveTarget(RuleRef::Msg(msg), t)
        }
        "requestbodyprocessor" => Ctl::RequestBodyProcessor(
            BodyProcessor::parse(arg).ok_or_else(|| format!("ctl:requestBodyProcessor: unknown processor {arg}"))?,
        ),
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on_off(arg)?),
        "requestbodyaccess" => Ctl::RequestBodyAccess(on_off(arg)?),
        "auditengine" | "auditlogparts" => Ctl::Audit,
        other => return Err(format!("unknown ctl option {other}")),
    })
}

/// Parses an action list. Every action ModSecurity defines that a rule set may carry is
/// accepted; an unknown name is an error.
pub fn parse(raw: &[RawAction]) -> Result<Actions, String> {
    let mut a = Actions::default();
    for item in raw {
        let value = item.value.as_deref();
        let need = || value.ok_or_else(|| format!("action {} needs a value", item.name));
        match item.name.to_ascii_lowercase().as_str() {
            "id" => a.id = Some(need()?.trim().parse().map_err(|_| format!("bad rule id {}", need().unwrap_or("")))?),
            "phase" => {
                a.phase = Some(match need()?.trim() {
                    "request" => 2,
                    "response" => 4,
                    "logging" => 5,
                    n => n.parse().ok().filter(|p| (1..=5).contains(p)).ok_or_else(|| format!("bad phase {n}"))?,
                })
            }
            "msg" => a.msg = Some(Template::parse(need()?)?),
            "logdata" => a.logdata = Some(Template::parse(need()?)?),
            "tag" => a.tags.push(need()?.to_string()),
            "severity" => a.severity = Some(severity(need()?)?),
            "ver" => a.ver = Some(need()?.to_string()),
            "rev" | "maturity" | "accuracy" => {}
            "pass" => a.disruptive = Some(Disruptive::Pass),
            "block" => a.disruptive = Some(Disruptive::Block),
            "deny" => a.disruptive = Some(Disruptive::Deny),
            "drop" => a.disruptive = Some(Disruptive::Drop),
            "allow" => a.disruptive = Some(Disruptive::Allow),
            "redirect" => a.disruptive = Some(Disruptive::Redirect),
            "status" => a.status = Some(need()?.trim().parse().map_err(|_| "bad status".to_string())?),
            "log" => a.log = Some(true),
            "nolog" => a.log = Some(false),
            "auditlog" => a.auditlog = Some(true),
            "noauditlog" => a.auditlog = Some(false),
            "capture" => a.capture = true,
            "multimatch" => a.multi_match = true,
            "chain" => a.chain = true,
            "skipafter" => a.skip_after = Some(need()?.trim().to_string()),
            "skip" => a.skip = Some(need()?.trim().parse().map_err(|_| "bad skip count".to_string())?),
            "t" => match need()?.trim() {
                n if n.eq_ignore_ascii_case("none") => {
                    a.t_none = true;
                    a.transforms.clear();
                }
                n => a.transforms.push(Transform::parse(n).ok_or_else(|| format!("unknown transformation {n}"))?),
            },
            "setvar" => a.effects.push(Effect::SetVar(parse_setvar(need()?)?)),
            "ctl" => a.effects.push(Effect::Ctl(parse_ctl(need()?)?)),
            // Persistent collections (IP, GLOBAL) and their expiry are not kept by Portcullis;
            // CRS only uses them when tx.enable_default_collections is set.
            "initcol" | "expirevar" | "setuid" | "setsid" | "setenv" => {
                need()?;
            }
            other => return Err(format!("unknown action {other}")),
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::actions as split;

    #[test]
    fn typical_crs_actions() {
        let a = parse(&split("id:942100,phase:2,block,capture,t:none,t:utf8toUnicode,t:urlDecodeUni,msg:'SQLi',logdata:'%{MATCHED_VAR}',tag:'a',tag:'b',severity:'CRITICAL',setvar:'tx.sql_score=+%{tx.critical_anomaly_score}',setvar:!tx.x,ctl:ruleRemoveTargetById=942100;ARGS:pwd").unwrap()).unwrap();
        assert_eq!(a.id, Some(942100));
        assert_eq!(a.phase, Some(2));
        assert_eq!(a.disruptive, Some(Disruptive::Block));
        assert!(a.capture && a.t_none);
        assert_eq!(a.transforms, vec![Transform::Utf8ToUnicode, Transform::UrlDecodeUni]);
        assert_eq!(a.severity, Some(2));
        assert_eq!(a.tags.iter().collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(a.tags.contains("b") && !a.tags.contains("c"));
        assert_eq!(a.effects.len(), 3);
        assert!(matches!(&a.effects[0], Effect::SetVar(s) if s.op == SetOp::Add && s.collection == Var::Tx));
        assert!(matches!(&a.effects[1], Effect::SetVar(s) if s.op == SetOp::Delete));
    }

    #[test]
    fn unknown_things_are_errors() {
        assert!(parse(&split("id:1,bogus").unwrap()).is_err());
        assert!(parse(&split("t:bogus").unwrap()).is_err());
        assert!(parse(&split("ctl:bogus=1").unwrap()).is_err());
        assert!(parse(&split("phase:9").unwrap()).is_err());
    }
}
