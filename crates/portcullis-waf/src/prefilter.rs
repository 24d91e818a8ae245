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
/// A lower-case literal and the slots it satisfies.
type SlotLiteral = (Vec<u8>, Vec<u32>);

/// The literals of a group of prefiltered rule links (their slots), ready to scan a value:
/// longer literals in one case-insensitive Aho-Corasick automaton, one-byte literals as the
/// slots each byte sets. One-byte literals (`t`, `"`, `.` from classes like `[st]`) occur at
/// most positions of ordinary values; reported through the automaton's overlapping search
/// they cost a match report each (~15,000 for a 4 KB JSON body).
#[derive(Debug)]
pub struct Literals {
    automaton: Option<aho_corasick::AhoCorasick>,
    /// Automaton pattern index -> the slots it satisfies.
    pattern_slots: Vec<Vec<u32>>,
    /// Per byte, 1 + its index in `byte_lists` (0: no slot); both letter cases included.
    by_byte: Box<[u16; 256]>,
    /// The slots a byte satisfies.
    byte_lists: Vec<Vec<u32>>,
}

impl Default for Literals {
    fn default() -> Self {
        Literals { automaton: None, pattern_slots: Vec::new(), by_byte: Box::new([0; 256]), byte_lists: Vec::new() }
    }
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
    pub fn build(literals: Vec<SlotLiteral>) -> Result<Literals, String> {
        let literals = prune(literals)?;
        let mut patterns = Vec::new();
        let mut pattern_slots = Vec::new();
        let mut by_byte: std::collections::BTreeMap<u8, Vec<u32>> = std::collections::BTreeMap::new();
        for (lit, slots) in literals {
            match lit.as_slice() {
                [b] => {
                    for byte in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
                        let list = by_byte.entry(byte).or_default();
                        list.extend(&slots);
                        list.sort_unstable();
                        list.dedup();
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
        let mut literals = Literals { automaton, pattern_slots, ..Literals::default() };
        for (byte, list) in by_byte {
            literals.byte_lists.push(list);
            if let Some(cell) = literals.by_byte.get_mut(usize::from(byte)) {
                *cell = u16::try_from(literals.byte_lists.len()).map_err(|_| "too many one-byte literals")?;
            }
        }
        Ok(literals)
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
        if self.byte_lists.is_empty() {
            return;
        }
        // Each distinct byte once: a value holds a few dozen, out of the many one-byte
        // literals (a class like `[\s'"(;]` gives one per byte) all chains have together.
        let mut present = [0u64; 4];
        for &b in value {
            set_byte(&mut present, b);
        }
        for (w, mut word) in present.into_iter().enumerate() {
            while word != 0 {
                let byte = w * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                let list = self.by_byte.get(byte).and_then(|&i| self.byte_lists.get(usize::from(i).checked_sub(1)?));
                for &slot in list.map(Vec::as_slice).unwrap_or_default() {
                    set_slot(bits, slot);
                }
            }
        }
    }
}

/// Drops from each literal the slots a shorter literal inside it already sets (wherever the
/// longer one occurs, so does the shorter), and literals left with no slot: the bits a scan
/// sets stay the same, and the automaton gets smaller (CRS's command and keyword lists hold
/// many words that contain another of its words).
fn prune(literals: Vec<SlotLiteral>) -> Result<Vec<SlotLiteral>, String> {
    if literals.len() < 2 {
        return Ok(literals);
    }
    let ac = aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(literals.iter().map(|(l, _)| l))
        .map_err(|e| format!("prefilter automaton: {e}"))?;
    let mut kept = Vec::with_capacity(literals.len());
    for (i, (lit, slots)) in literals.iter().enumerate() {
        let mut covered: Vec<u32> = Vec::new();
        for m in ac.find_overlapping_iter(lit.as_slice()) {
            let j = m.pattern().as_usize();
            // Another literal inside this one: a shorter one, or an equal one listed first.
            let inner = literals.get(j).is_some_and(|(other, _)| other.len() < lit.len() || j < i);
            if j != i && inner {
                covered.extend(literals.get(j).map(|(_, s)| s.as_slice()).unwrap_or_default());
            }
        }
        let rest: Vec<u32> = slots.iter().copied().filter(|s| !covered.contains(s)).collect();
        if !rest.is_empty() {
            kept.push((lit.clone(), rest));
        }
    }
    Ok(kept)
}

/// A `multiMatch` link's screen: its literals when all have two bytes or more (a one-byte
/// literal occurs in most values and would screen out little for the price of a search).
pub fn screen(literals: Option<Set>) -> Result<Option<aho_corasick::AhoCorasick>, String> {
    let Some(literals) = literals.filter(|l| l.iter().all(|x| x.len() >= 2)) else { return Ok(None) };
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(&literals)
        .map(Some)
        .map_err(|e| format!("multiMatch screen: {e}"))
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
    chosen(&parse(pattern)?)
}

/// The first set, unless it is weak or missing and the expression's plain form gives one
/// that is not (see [`crate::plain`]).
fn chosen(hir: &Hir) -> Option<Set> {
    let first = first_set(hir);
    if first.as_ref().is_some_and(|s| !weak(s)) {
        return first;
    }
    let plain = crate::plain::with_noise(hir, first_set).filter(|s| valid(s) && !weak(s) && s.len() <= MAX_SET);
    plain.or(first)
}

/// The set [`necessary_literals`] gives for a parsed expression.
fn first_set(hir: &Hir) -> Option<Set> {
    let info = walk(hir);
    info.necessary.or(info.exact).filter(valid)
}

fn parse(pattern: &str) -> Option<Hir> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .build()
        .parse(&crate::operator::byte_escapes(pattern))
        .ok()
}

fn valid(set: &Set) -> bool {
    !set.is_empty() && set.iter().all(|s| !s.is_empty())
}

/// A second set of strings every match of `pattern` also holds one of, besides
/// [`necessary_literals`]'s: a value must hold one string of each, a stronger screen when
/// the first set is common. A sequence gives its second-best part's set
/// (`[\s"']on[a-z]{3,50}\s*=` holds "on" and "="); an alternation the union over its
/// branches of their second set, or their first where the second is weak or missing (a
/// branch's first holds for its matches too). None when it would be weak.
pub fn second_literals(pattern: &str) -> Option<Set> {
    let hir = parse(pattern)?;
    let first = chosen(&hir)?;
    second(&hir).filter(|s| valid(s) && !weak(s) && *s != first && s.iter().all(|l| l.len() == 1))
}

/// Holds a letter or digit alone, which most text holds.
fn weak(set: &Set) -> bool {
    set.iter().any(|l| matches!(l.as_slice(), [b] if b.is_ascii_alphanumeric()))
}

fn second(hir: &Hir) -> Option<Set> {
    match hir.kind() {
        HirKind::Capture(c) => second(&c.sub),
        HirKind::Repetition(r) if r.min > 0 => second(&r.sub),
        HirKind::Concat(subs) => {
            let mut sets = concat_candidates(subs.iter().map(walk).collect());
            let first = best(sets.clone())?;
            sets.retain(|c| *c != first);
            best(sets)
        }
        HirKind::Alternation(subs) => {
            let mut all = Vec::new();
            for sub in subs {
                all.extend(second(sub).filter(|s| valid(s) && !weak(s)).or_else(|| first_set(sub))?);
                if all.len() > MAX_SET {
                    return None;
                }
            }
            Some(dedup(all))
        }
        _ => None,
    }
}

/// Every set a concatenation's parts (`infos`, in order) make one of which each match holds
/// (products of adjacent exact parts, and the parts' own sets).
fn concat_candidates(infos: Vec<Info>) -> Vec<Set> {
    let mut out: Vec<Set> = Vec::new();
    let mut product: Set = vec![Vec::new()];
    let keep = |out: &mut Vec<Set>, set: Option<Set>| {
        if let Some(set) = set.filter(valid) {
            out.push(set);
        }
    };
    for info in infos {
        if let Some(longer) = info.exact.as_ref().and_then(|ex| times(&product, ex)) {
            product = longer;
            continue;
        }
        match info.exact {
            Some(ex) => keep(&mut out, Some(std::mem::replace(&mut product, ex))),
            None => {
                keep(&mut out, Some(std::mem::replace(&mut product, vec![Vec::new()])));
                keep(&mut out, info.necessary);
            }
        }
    }
    keep(&mut out, Some(product));
    out
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

/// Every concatenation of `n` strings of `set`, when there are at most [`MAX_PRODUCT`].
fn power(set: &Set, n: u32) -> Option<Set> {
    (0..n).try_fold(vec![Vec::new()], |product, _| times(&product, set))
}

/// Every string of `a` followed by every string of `b`, when there are at most
/// [`MAX_PRODUCT`].
fn times(a: &Set, b: &Set) -> Option<Set> {
    (a.len().saturating_mul(b.len()) <= MAX_PRODUCT)
        .then(|| dedup(a.iter().flat_map(|p| b.iter().map(move |e| [p.as_slice(), e].concat())).collect()))
}

/// The best of `sets` (see [`better`]; the first of equals).
fn best(sets: impl IntoIterator<Item = Set>) -> Option<Set> {
    sets.into_iter().reduce(|a, b| if better(&b, &a) { b } else { a })
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
            // Every match starts with `min` matches of the sub-expression in a row: when those
            // are few known strings, their products (`\.{2,3}` holds "..").
            let repeated = sub.exact.as_ref().and_then(|set| power(set, r.min));
            let exact = if r.max == Some(r.min) { repeated.clone() } else { None };
            let mut necessary = sub.necessary.or(sub.exact);
            pick(&mut necessary, repeated);
            Info { exact, necessary }
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
            let infos: Vec<Info> = subs.iter().map(walk).collect();
            let exact = infos.iter().try_fold(vec![Vec::new()], |product, info| times(&product, info.exact.as_ref()?));
            Info { exact, necessary: best(concat_candidates(infos)) }
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
        assert_eq!(lits("(?:^|/)\\.{2,3}/"), Some(vec!["..".into()]));
        assert_eq!(lits("[ab]{2}c"), Some(vec!["aac".into(), "abc".into(), "bac".into(), "bbc".into()]));
        assert_eq!(lits("x{3,}"), Some(vec!["xxx".into()]));
        assert_eq!(lits("(?:foo|\\d+)"), None);
    }

    /// The bits a scan sets without any pruning: each literal's slots where it occurs.
    fn naive_bits(literals: &[SlotLiteral], value: &[u8]) -> Vec<u64> {
        let mut bits = vec![0u64; 1];
        let lower = value.to_ascii_lowercase();
        for (lit, slots) in literals {
            if lower.windows(lit.len()).any(|w| w == lit.as_slice()) {
                slots.iter().for_each(|s| set_slot(&mut bits, *s));
            }
        }
        bits
    }

    proptest::proptest! {
        /// Pruning literals that contain another literal of the same slot changes no bit.
        #[test]
        fn pruning_keeps_every_bit(
            lits in proptest::collection::btree_map("[ab.]{1,4}", proptest::collection::btree_set(0u32..6, 1..3), 1..12),
            values in proptest::collection::vec("[aAbB.x]{0,12}", 1..8),
        ) {
            let literals: Vec<SlotLiteral> =
                lits.into_iter().map(|(l, s)| (l.into_bytes(), s.into_iter().collect())).collect();
            let built = Literals::build(literals.clone()).unwrap();
            for v in values {
                let mut bits = vec![0u64; 1];
                built.scan(v.as_bytes(), &mut bits);
                proptest::prop_assert_eq!(bits, naive_bits(&literals, v.as_bytes()), "{:?}", v);
            }
        }
    }

    #[test]
    fn pruning_drops_what_a_shorter_literal_covers() {
        let lits = |v: &[(&str, &[u32])]| v.iter().map(|(l, s)| (l.as_bytes().to_vec(), s.to_vec())).collect();
        let pruned = prune(lits(&[("sel", &[1]), ("select", &[1, 2]), ("union", &[3]), ("unions", &[3])])).unwrap();
        assert_eq!(pruned, lits(&[("sel", &[1]), ("select", &[2]), ("union", &[3])]));
    }

    #[test]
    fn a_second_set_comes_from_another_part_or_each_branch() {
        let second =
            |p: &str| second_literals(p).map(|s| s.into_iter().map(|l| String::from_utf8(l).unwrap()).collect());
        let want = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<String>>());
        // CRS 941120's shape: "on" first, "=" second.
        assert_eq!(lits("(?i)[\\s\"'`;/0-9=]on[a-z]{3,50}[\\s;]*?=[^=]"), want(&["on"]));
        assert_eq!(second("(?i)[\\s\"'`;/0-9=]on[a-z]{3,50}[\\s;]*?=[^=]"), want(&["="]));
        // A branch without a second set repeats its first (941160's shape).
        assert_eq!(second("(?i)<[^a-z]*script|(?:on|src)[a-z]*\\s*="), want(&["<", "="]));
        // None when weak (a letter alone), longer than one byte, or the same as the first.
        assert_eq!(second("a.*b"), None);
        assert_eq!(second("on.*=.*<script"), None);
        assert_eq!(second("x=y|x=z"), None);
        assert_eq!(second("(?i)union\\s+select"), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn a_match_holds_a_string_of_each_set(value in "[oOnN=<>a-z\\s\"';/]{0,16}") {
            // Soundness: wherever the expression matches, both sets have a string in the value.
            for p in ["(?i)[\\s\"';/]on[a-z]{1,5}[\\s;]*?=[^=]", "(?i)<[^a-z]*s|(?:on|src)[a-z]*\\s*=", "(?:a|b)=(?:<|>)"] {
                let re = crate::operator::compile_regex(p, false).unwrap();
                if !re.is_match(value.as_bytes()) {
                    continue;
                }
                let lower = value.to_ascii_lowercase();
                for set in [necessary_literals(p), second_literals(p)].into_iter().flatten() {
                    proptest::prop_assert!(
                        set.iter().any(|l| lower.as_bytes().windows(l.len()).any(|w| w == l.as_slice())),
                        "{} on {:?}: {:?}", p, value, set
                    );
                }
            }
        }
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
