//! Literal prefilters: for a regular expression, a set of (lower-case) strings one of which
//! every match must contain. All rules that share a transformation chain get one combined
//! Aho-Corasick automaton, so a value is scanned once per chain and a rule whose literals do
//! not occur never runs its expression.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Most strings a set may hold before it is dropped (it would filter little anyway).
const MAX_SET: usize = 512;
/// Most strings a concatenation's product may hold before it is cut into a new run.
const MAX_PRODUCT: usize = 64;
/// Most bytes of a class expanded into single-byte strings.
const MAX_CLASS: usize = 6;

type Set = Vec<Vec<u8>>;

/// The literals of a group of prefiltered rule links (their slots), ready to scan a value:
/// longer literals in one case-insensitive Aho-Corasick automaton, one-byte literals as
/// per-slot byte masks. One-byte literals (`t`, `"`, `.` from classes like `[st]`) occur at
/// most positions of ordinary values; reported through the automaton's overlapping search
/// they cost a match report each (~15,000 for a 4 KB JSON body).
#[derive(Debug, Default)]
pub struct Literals {
    automaton: Option<aho_corasick::AhoCorasick>,
    /// Automaton pattern index -> the slots it satisfies.
    pattern_slots: Vec<Vec<u32>>,
    /// Slots satisfied by one of a set of bytes (both letter cases included).
    byte_slots: Vec<(u32, [u64; 4])>,
}

fn set_byte(mask: &mut [u64; 4], b: u8) {
    if let Some(w) = mask.get_mut(usize::from(b / 64)) {
        *w |= 1u64 << (b % 64);
    }
}

fn set_slot(bits: &mut [u64], slot: u32) {
    if let Some(w) = bits.get_mut(slot as usize / 64) {
        *w |= 1u64 << (slot % 64);
    }
}

impl Literals {
    /// From (lower-case literal, the slots it satisfies) pairs.
    pub fn build(literals: Vec<(Vec<u8>, Vec<u32>)>) -> Result<Literals, String> {
        let mut patterns = Vec::new();
        let mut pattern_slots = Vec::new();
        let mut masks: std::collections::BTreeMap<u32, [u64; 4]> = std::collections::BTreeMap::new();
        for (lit, slots) in literals {
            match lit.as_slice() {
                [b] => {
                    for &slot in &slots {
                        let mask = masks.entry(slot).or_default();
                        set_byte(mask, b.to_ascii_lowercase());
                        set_byte(mask, b.to_ascii_uppercase());
                    }
                }
                _ => {
                    patterns.push(lit);
                    pattern_slots.push(slots);
                }
            }
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            let ac = aho_corasick::AhoCorasick::builder().ascii_case_insensitive(true).build(&patterns);
            Some(ac.map_err(|e| format!("prefilter automaton: {e}"))?)
        };
        Ok(Literals { automaton, pattern_slots, byte_slots: masks.into_iter().collect() })
    }

    /// Sets in `bits` the slot of every literal that occurs in `value`.
    pub fn scan(&self, value: &[u8], bits: &mut [u64]) {
        if let Some(ac) = &self.automaton {
            for m in ac.find_overlapping_iter(value) {
                for &slot in self.pattern_slots.get(m.pattern().as_usize()).map(Vec::as_slice).unwrap_or_default() {
                    set_slot(bits, slot);
                }
            }
        }
        if self.byte_slots.is_empty() {
            return;
        }
        let mut present = [0u64; 4];
        for &b in value {
            set_byte(&mut present, b);
        }
        for (slot, mask) in &self.byte_slots {
            if mask.iter().zip(&present).any(|(m, p)| m & p != 0) {
                set_slot(bits, *slot);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Info {
    /// Every string the expression can match, when that set is small and known.
    exact: Option<Set>,
    /// Strings one of which every match contains.
    necessary: Option<Set>,
}

/// The strings one of which every match of `pattern` (a ModSecurity expression) contains,
/// lower-cased for an ASCII-case-insensitive search; `None` when no useful set exists.
pub fn necessary_literals(pattern: &str) -> Option<Set> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .build()
        .parse(&crate::operator::byte_escapes(pattern))
        .ok()?;
    let info = walk(&hir);
    let set = info.necessary.or(info.exact)?;
    (!set.is_empty() && set.iter().all(|s| !s.is_empty())).then_some(set)
}

fn dedup(mut set: Set) -> Set {
    set.sort();
    set.dedup();
    set
}

fn lower(bytes: &[u8]) -> Vec<u8> {
    bytes.to_ascii_lowercase()
}

fn class_bytes(class: &Class) -> Option<Set> {
    let mut bytes = Vec::new();
    match class {
        Class::Bytes(c) => {
            for r in c.iter() {
                for b in r.start()..=r.end() {
                    bytes.push(b.to_ascii_lowercase());
                    if bytes.len() > 4 * MAX_CLASS {
                        return None;
                    }
                }
            }
        }
        Class::Unicode(c) => {
            for r in c.iter() {
                for ch in r.start()..=r.end() {
                    let b = u8::try_from(u32::from(ch)).ok()?;
                    bytes.push(b.to_ascii_lowercase());
                    if bytes.len() > 4 * MAX_CLASS {
                        return None;
                    }
                }
            }
        }
    }
    bytes.sort_unstable();
    bytes.dedup();
    (bytes.len() <= MAX_CLASS && !bytes.is_empty()).then(|| bytes.into_iter().map(|b| vec![b]).collect())
}

/// Better candidate: longer shortest string, then fewer strings.
fn better(a: &Set, b: &Set) -> bool {
    let min = |s: &Set| s.iter().map(Vec::len).min().unwrap_or(0);
    (min(a), std::cmp::Reverse(a.len())) > (min(b), std::cmp::Reverse(b.len()))
}

fn pick(best: &mut Option<Set>, candidate: Option<Set>) {
    if let Some(c) = candidate
        && !c.is_empty()
        && c.iter().all(|s| !s.is_empty())
        && best.as_ref().is_none_or(|b| better(&c, b))
    {
        *best = Some(c);
    }
}

fn walk(hir: &Hir) -> Info {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Info { exact: Some(vec![Vec::new()]), necessary: None },
        HirKind::Literal(l) => {
            let s = vec![lower(&l.0)];
            Info { exact: Some(s.clone()), necessary: Some(s) }
        }
        HirKind::Class(c) => {
            let s = class_bytes(c);
            Info { exact: s.clone(), necessary: s }
        }
        HirKind::Capture(c) => walk(&c.sub),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                return Info::default();
            }
            let sub = walk(&r.sub);
            let exact = if r.min == 1 && r.max == Some(1) { sub.exact.clone() } else { None };
            Info { exact, necessary: sub.necessary.or(sub.exact) }
        }
        HirKind::Alternation(subs) => {
            let infos: Vec<Info> = subs.iter().map(walk).collect();
            let union = |get: &dyn Fn(&Info) -> Option<Set>| -> Option<Set> {
                let mut all = Vec::new();
                for i in &infos {
                    all.extend(get(i)?);
                    if all.len() > MAX_SET {
                        return None;
                    }
                }
                Some(dedup(all))
            };
            let exact = union(&|i: &Info| i.exact.clone());
            let necessary = union(&|i: &Info| i.necessary.clone().or_else(|| i.exact.clone()))
                .filter(|s| s.iter().all(|x| !x.is_empty()));
            Info { exact, necessary }
        }
        HirKind::Concat(subs) => {
            let mut best: Option<Set> = None;
            let mut product: Set = vec![Vec::new()];
            let mut whole_exact = true;
            for sub in subs {
                let info = walk(sub);
                match info.exact {
                    Some(ex) if product.len() * ex.len() <= MAX_PRODUCT => {
                        product = dedup(
                            product.iter().flat_map(|p| ex.iter().map(move |e| [p.as_slice(), e].concat())).collect(),
                        );
                    }
                    Some(ex) => {
                        pick(&mut best, Some(std::mem::replace(&mut product, ex)));
                        whole_exact = false;
                    }
                    None => {
                        pick(&mut best, Some(std::mem::replace(&mut product, vec![Vec::new()])));
                        pick(&mut best, info.necessary);
                        whole_exact = false;
                    }
                }
            }
            let exact = whole_exact.then(|| product.clone());
            pick(&mut best, Some(product));
            Info { exact, necessary: best }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &str) -> Option<Vec<String>> {
        necessary_literals(p).map(|s| s.into_iter().map(|l| String::from_utf8(l).unwrap()).collect())
    }

    #[test]
    fn extracts_what_every_match_contains() {
        assert_eq!(lits("(?i)union[\\s]+select"), Some(vec!["select".into()]));
        assert_eq!(lits("(?i)\\b(?:select|insert)\\b"), Some(vec!["insert".into(), "select".into()]));
        assert_eq!(lits("a.*b"), Some(vec!["a".into()]));
        assert_eq!(lits("<script"), Some(vec!["<script".into()]));
        assert_eq!(
            lits("java\\.lang\\.(?:runtime|processbuilder)"),
            Some(vec!["java.lang.processbuilder".into(), "java.lang.runtime".into()])
        );
        assert_eq!(lits(".*"), None);
        assert_eq!(lits("^\\d+$"), None);
        assert_eq!(lits("a?b?"), None);
        assert_eq!(lits("(?:foo|\\d+)"), None);
    }

    #[test]
    fn every_crs_match_contains_a_literal() {
        // Soundness on real patterns: wherever the regex matches, a literal occurs.
        let cases = [
            ("(?i)\\bon(?:error|load)\\s*=", "<img onerror = x>"),
            ("(?:\\.\\./|\\.\\.\\\\)", "a/../b"),
            ("(?i)s\\W*e\\W*l\\W*e\\W*c\\W*t", "S e L e C t"),
        ];
        for (p, input) in cases {
            let re = crate::operator::compile_regex(p, false).unwrap();
            assert!(re.is_match(input.as_bytes()));
            if let Some(set) = necessary_literals(p) {
                let lower = input.to_ascii_lowercase();
                assert!(
                    set.iter().any(|l| lower.as_bytes().windows(l.len()).any(|w| w == l.as_slice())),
                    "{p}: {set:?}"
                );
            }
        }
    }
}
