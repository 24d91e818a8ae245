//! The TX collection of one transaction. CRS sets and reads some hundred TX variables per
//! request; kept as a map of `String` to `Vec<u8>`, that was two allocations per variable per
//! request, and every lookup compared against a key somewhere else on the heap. Here names
//! and values live back to back in one byte arena (kept, like the table, by the next
//! transaction on the thread), and the table holds only offsets.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

/// Where one variable's name and value are in [`Tx::bytes`].
#[derive(Debug, Clone, Copy)]
struct Slot {
    name: usize,
    name_len: usize,
    value: usize,
    len: usize,
    /// Room at `value`: a longer value moves to the end of the arena with room to double.
    cap: usize,
}

/// TX: names (lower-case) to values.
#[derive(Debug, Default)]
pub struct Tx {
    table: HashTable<Slot>,
    hasher: DefaultHashBuilder,
    bytes: Vec<u8>,
    /// Bit d set when the variable named by the one digit d may exist: a capturing rule
    /// removes TX.1 to TX.9 on every match, mostly when they were never set.
    digits: u16,
    /// Some name set held a newline (a name a macro made from request data): a key
    /// expression's `^` may then match inside a name, not only at its start.
    newline: bool,
}

/// The bit of a one-digit name in [`Tx::digits`].
fn digit_bit(name: &str) -> Option<u16> {
    match name.as_bytes() {
        [d @ b'0'..=b'9'] => Some(1 << (d - b'0')),
        _ => None,
    }
}

fn at(bytes: &[u8], at: usize, len: usize) -> &[u8] {
    bytes.get(at..at.saturating_add(len)).unwrap_or_default()
}

/// The table lookup's test: the slot holds `name`.
fn named<'b>(bytes: &'b [u8], name: &'b str) -> impl Fn(&Slot) -> bool + 'b {
    move |s| at(bytes, s.name, s.name_len) == name.as_bytes()
}

impl Clone for Tx {
    fn clone(&self) -> Self {
        Tx {
            table: self.table.clone(),
            hasher: self.hasher.clone(),
            bytes: self.bytes.clone(),
            digits: self.digits,
            newline: self.newline,
        }
    }

    /// Keeps this one's table and arena when they have room (a transaction starting from
    /// the prelude's copy): a derived `clone_from` would allocate both anew, and the arena,
    /// cloned to its exact length, would grow again at the first variable set.
    fn clone_from(&mut self, source: &Self) {
        self.table.clone_from(&source.table);
        self.hasher.clone_from(&source.hasher);
        self.bytes.clone_from(&source.bytes);
        self.digits = source.digits;
        self.newline = source.newline;
    }
}

impl Tx {
    pub fn with_capacity(variables: usize) -> Tx {
        Tx {
            table: HashTable::with_capacity(variables),
            hasher: DefaultHashBuilder::default(),
            bytes: Vec::new(),
            digits: 0,
            newline: false,
        }
    }

    /// Variables the table has room for (0 for a table never allocated).
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Empties it, keeping the allocations; false when they grew too large to be worth keeping.
    pub fn clear(&mut self) -> bool {
        if self.table.capacity() > 1024 || self.bytes.capacity() > crate::cache::KEEP_BYTES {
            return false;
        }
        self.table.clear();
        self.bytes.clear();
        self.digits = 0;
        self.newline = false;
        true
    }

    /// Whether some name may hold a newline (false: none ever did).
    pub fn names_have_newline(&self) -> bool {
        self.newline
    }

    fn find(&self, name: &str) -> Option<&Slot> {
        self.table.find(self.hasher.hash_one(name.as_bytes()), named(&self.bytes, name))
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.find(name).map(|s| at(&self.bytes, s.value, s.len))
    }

    /// The stored name and the value.
    pub fn get_key_value(&self, name: &str) -> Option<(&[u8], &[u8])> {
        self.find(name).map(|s| (at(&self.bytes, s.name, s.name_len), at(&self.bytes, s.value, s.len)))
    }

    pub fn set(&mut self, name: &str, value: &[u8]) {
        if let Some(bit) = digit_bit(name) {
            self.digits |= bit;
        }
        self.newline |= name.contains('\n');
        let Tx { table, hasher, bytes, .. } = self;
        let hash = hasher.hash_one(name.as_bytes());
        match table.find_mut(hash, named(bytes, name)) {
            Some(s) if value.len() <= s.cap => {
                if let Some(room) = bytes.get_mut(s.value..s.value + value.len()) {
                    room.copy_from_slice(value);
                }
                s.len = value.len();
            }
            Some(s) => {
                // Room to double, so a value that keeps growing costs amortised linear space.
                let cap = value.len().saturating_mul(2);
                s.value = bytes.len();
                s.len = value.len();
                s.cap = cap;
                bytes.extend_from_slice(value);
                bytes.resize(s.value + cap, 0);
            }
            None => {
                let slot = Slot {
                    name: bytes.len(),
                    name_len: name.len(),
                    value: bytes.len() + name.len(),
                    len: value.len(),
                    cap: value.len(),
                };
                bytes.extend_from_slice(name.as_bytes());
                bytes.extend_from_slice(value);
                let bytes = &*bytes;
                table.insert_unique(hash, slot, |s| hasher.hash_one(at(bytes, s.name, s.name_len)));
            }
        }
    }

    pub fn remove(&mut self, name: &str) {
        if digit_bit(name).is_some_and(|bit| self.digits & bit == 0) {
            return;
        }
        let bytes = &self.bytes;
        let hash = self.hasher.hash_one(name.as_bytes());
        if let Ok(entry) = self.table.find_entry(hash, named(bytes, name)) {
            entry.remove();
        }
    }

    /// Every (name, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.table.iter().map(|s| (at(&self.bytes, s.name, s.name_len), at(&self.bytes, s.value, s.len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_from_keeps_the_arena_it_had() {
        // As a transaction starting from the prelude's variables: same table size, and an
        // arena that earlier transactions grew.
        let mut source = Tx::with_capacity(128);
        source.set("level", b"1");
        let mut tx = Tx::with_capacity(128);
        tx.set("old", &[b'x'; 4096]);
        let room = tx.bytes.capacity();
        tx.clone_from(&source);
        assert_eq!((tx.get("level"), tx.get("old")), (Some(&b"1"[..]), None));
        assert_eq!(tx.bytes.capacity(), room, "the arena was not replaced by an exact copy");
        tx.set("level", b"22");
        assert_eq!((tx.get("level"), source.get("level")), (Some(&b"22"[..]), Some(&b"1"[..])));
    }

    #[test]
    fn set_get_grow_remove_clear() {
        let mut tx = Tx::with_capacity(4);
        tx.set("score", b"5");
        tx.set("level", b"1");
        tx.set("score", b"10");
        tx.set("score", b"7");
        assert_eq!(tx.get("score"), Some(&b"7"[..]));
        assert_eq!(tx.get_key_value("level"), Some((&b"level"[..], &b"1"[..])));
        assert_eq!(tx.get("missing"), None);
        let mut long = Vec::new();
        for i in 0..200u8 {
            long.push(i);
            tx.set("log", &long);
        }
        assert_eq!(tx.get("log"), Some(long.as_slice()));
        assert!(tx.bytes.len() < 4 * long.len() + 64, "growing a value costs amortised linear space");
        tx.remove("level");
        assert_eq!(tx.get("level"), None);
        tx.set("3", b"x");
        tx.remove("4");
        assert_eq!(tx.get("3"), Some(&b"x"[..]));
        tx.remove("3");
        assert_eq!(tx.get("3"), None);
        tx.set("3", b"y");
        assert_eq!(tx.get("3"), Some(&b"y"[..]));
        tx.remove("3");
        let mut all: Vec<_> = tx.iter().map(|(k, _)| k.to_vec()).collect();
        all.sort();
        assert_eq!(all, vec![b"log".to_vec(), b"score".to_vec()]);
        let room = tx.capacity();
        assert!(tx.clear());
        assert_eq!((tx.get("score"), tx.capacity()), (None, room));
    }
}
