//! Tests of the per-transaction cache (cache.rs).

use super::{Cache, MAX_SHARED, Table, has};
use crate::rules::RuleSet;
use proptest::prelude::*;

/// Rules whose chains react to different value features (whitespace, commas, dashes,
/// percent signs, comments), one that changes every value (base64Decode) and one that
/// changes none.
fn chained_rules() -> RuleSet {
    let text = r#"
SecRule ARGS "@pm ab cd" "id:1,phase:2,pass,t:none,t:removeWhitespace"
SecRule ARGS "@pm b,c a-b" "id:2,phase:2,pass,t:none,t:cmdLine"
SecRule ARGS "@pm a b ab" "id:3,phase:2,pass,t:none,t:urlDecodeUni,t:compressWhitespace"
SecRule ARGS "@pm ad xy" "id:4,phase:2,pass,t:none,t:urlDecodeUni,t:replaceComments"
SecRule ARGS "@pm ab" "id:5,phase:2,pass,t:none,t:base64Decode"
SecRule ARGS "@pm a-b yz" "id:6,phase:2,pass,t:none,t:lowercase"
"#;
    let mut b = crate::Builder::new();
    b.text("union test", text, std::path::Path::new(".")).expect("rules parse");
    b.build().expect("rules build")
}

#[test]
fn values_with_the_same_bytes_share_an_identity() {
    let mut c = Cache::default();
    let (a, b, other) = (b"EUR".to_vec(), b"EUR".to_vec(), b"USD".to_vec());
    let id = c.id(&a);
    assert_eq!((c.id(&b), c.id(&a)), (id, id), "same bytes, another address");
    assert_ne!(c.id(&other), id);
    assert_ne!(c.id(&a[..2]), id, "a prefix is another value");
    let (long, copy) = (vec![b'x'; MAX_SHARED + 1], vec![b'x'; MAX_SHARED + 1]);
    assert_ne!(c.id(&long), c.id(&copy), "long values are not compared");
    assert!(c.clear());
    let (again, fresh) = (c.id(&other), c.id(&a));
    assert_ne!(again, fresh, "identities start over after clear");
    assert_eq!(c.id(&b), fresh);
}

#[test]
fn a_table_forgets_everything_at_each_generation_and_after_wrapping() {
    let mut t: Table<u32> = Table::default();
    assert_eq!(t.get(3), None);
    t.insert(3, 7);
    assert_eq!((t.get(3), t.get(2), t.get(4)), (Some(7), None, None));
    t.clear();
    assert_eq!(t.get(3), None);
    t.insert(1, 5);
    assert_eq!((t.get(1), t.get(3)), (Some(5), None));
    t.live = u32::MAX;
    t.insert(0, 9);
    t.clear();
    assert_eq!((t.get(0), t.get(1)), (None, None), "the generation wrapped");
    t.insert(2, 4);
    assert_eq!((t.get(0), t.get(2)), (None, Some(4)));
}

/// Gives every one of `values` to a cache's value visitor.
fn each<'v>(values: &'v [Vec<u8>]) -> impl FnMut(&mut dyn FnMut(&'v [u8])) -> bool {
    move |f| {
        values.iter().for_each(|v| f(v));
        true
    }
}

proptest! {
    // A chain's union over a variable, computed from the variable's feature groups (only
    // the values the chain may change are visited), holds exactly the slots of the values'
    // own bits through the chain together. Many distinct feature sets (more than the groups
    // a variable keeps) and repeated values come up.
    #[test]
    fn a_chain_union_is_the_union_of_its_values_bits(values in proptest::collection::vec(
        proptest::collection::vec(proptest::sample::select(b"abcdxyz -,%2+/*#.&;'\t".to_vec()), 0..7), 0..40)
    ) {
        let rules = chained_rules();
        let mut grouped = Cache::default();
        // Two variables in one cache (the second's groups and values come after the
        // first's): the values, and the same values in reverse order.
        let reversed: Vec<Vec<u8>> = values.iter().rev().cloned().collect();
        for chain in 0..rules.chains.len() {
            for (var, values) in [(0u8, &values), (1, &reversed)] {
                let mut naive = Cache::default();
                let mut union = vec![0u64; rules.prefilter.slots.div_ceil(64)];
                for v in values {
                    let id = naive.id(v);
                    for (u, w) in union.iter_mut().zip(naive.bits(&rules, id, v, chain)) {
                        *u |= w;
                    }
                }
                for slot in 0..rules.prefilter.slots {
                    let grouped = grouped.union_has(&rules, var, chain, &[slot], each(values));
                    prop_assert_eq!(grouped, has(&union, slot), "chain {} var {} slot {}", chain, var, slot);
                }
            }
        }
    }
}
