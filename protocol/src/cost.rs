//! What turning JSON text into a [`serde_json::Value`] costs in memory, found before building
//! it, so a server can count (or refuse) a request's parse before paying for it.
//!
//! A `Value` tree is much larger than its text: `[0,0,0,...]` spends two bytes of text per
//! element and `size_of::<Value>()` (32 bytes, or 80 with serde_json's `preserve_order`) per
//! element in the tree, plus the slack of a growing `Vec`; `{"":0}` is a B-tree node of over
//! 600 bytes without `preserve_order`. A peer that sends such text to a handler that takes a
//! `Value` would make the server hold tens of times what it sent.
//!
//! Both of serde_json's map representations are modelled: which one this build has depends on
//! whether any crate in it enables `preserve_order` (an `IndexMap`) or not (a `BTreeMap`).

use std::collections::BTreeMap;
use std::mem::size_of;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Bytes of `Value` tree per byte of JSON text, at most. With ordered maps the densest text is
/// an array of one-element arrays (`[[0],[0],...]`, 4 bytes of text per inner array against
/// its `Value`, a `Vec` of at least 4 `Value`s, and the outer `Vec`'s growth slack: about 1.5
/// `Value`s per byte); two `Value`s per byte leaves a margin. With B-tree maps it is an array
/// of one-entry objects (`[{"":0},...]`, 7 bytes of text per B-tree node). Used for texts too
/// small to be worth scanning.
pub const MAX_VALUE_BYTES_PER_TEXT_BYTE: usize = if ORDERED_MAPS {
    2 * VALUE
} else {
    (BTREE_NODE + 2 * BLOCK + 4 * VALUE).div_ceil(7)
};

/// Whether this build's `serde_json::Map` is an `IndexMap` (feature `preserve_order`) rather
/// than a `BTreeMap`: serde_json offers no other way to ask, and the two differ in size.
const ORDERED_MAPS: bool = size_of::<Map<String, Value>>() != size_of::<BTreeMap<String, Value>>();

/// Texts up to this long are charged `len * MAX_VALUE_BYTES_PER_TEXT_BYTE` without a scan
/// (at most ~384 KiB); longer ones are scanned, which costs a fraction of the parse itself.
pub const SCAN_THRESHOLD: usize = 4 * 1024;

const VALUE: usize = std::mem::size_of::<Value>();
/// A heap block's own overhead in the allocator, roughly.
const BLOCK: usize = 16;
/// One object entry in the map's entry `Vec`: hash, key `String`, `Value`.
const BUCKET: usize = 8 + 24 + VALUE;
/// One slot of the map's index table (an index and a control byte, rounded up generously).
const INDEX_SLOT: usize = 16;
/// Entries a B-tree node holds at most (the standard library's `CAPACITY`), and at least
/// outside the root (`MIN_LEN`).
const BTREE_CAPACITY: usize = 11;
const BTREE_MIN_LEN: usize = 5;
/// One B-tree node, counted as an internal node (a leaf plus its child pointers): parent
/// pointer, index and length, the keys and values, and the edges.
const BTREE_NODE: usize = 16 + BTREE_CAPACITY * (24 + VALUE) + (BTREE_CAPACITY + 1) * 8;

/// A growing `Vec`'s capacity for `n` elements: at least 4 once it has any, at most twice `n`.
fn capacity(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n.saturating_mul(2).max(4)
    }
}

/// An upper bound of the bytes a `Value` parsed from `text` holds (the text itself not
/// included). Linear in the text, allocation-free; invalid or too deeply nested text (which
/// the parse will refuse anyway) is charged as if it were the densest text.
pub fn value_bytes(text: &str) -> usize {
    let densest = text.len().saturating_mul(MAX_VALUE_BYTES_PER_TEXT_BYTE);
    if text.len() <= SCAN_THRESHOLD {
        return densest;
    }
    let mut counter = Counter { bytes: 0 };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match (&mut counter).deserialize(&mut deserializer) {
        Ok(()) => counter.bytes,
        Err(_) => densest,
    }
}

/// Adds up what each value of the tree would take.
struct Counter {
    bytes: usize,
}

impl Counter {
    fn add(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

impl<'de> DeserializeSeed<'de> for &mut Counter {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Counter {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.add(VALUE);
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.add(VALUE);
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.add(VALUE);
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.add(VALUE);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.add(VALUE);
        Ok(())
    }

    fn visit_str<E>(self, text: &str) -> Result<(), E> {
        self.add(VALUE + text.len() + BLOCK);
        Ok(())
    }

    // Each value counts its own `Value` (where its parent keeps it); a container adds its
    // allocation beyond its children's `Value`s.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut elements = 0usize;
        while seq.next_element_seed(&mut *self)?.is_some() {
            elements += 1;
        }
        let slack = capacity(elements) - elements;
        self.add(VALUE + slack.saturating_mul(VALUE) + BLOCK);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut entries = 0usize;
        while let Some(key) = map.next_key::<KeyLength>()? {
            map.next_value_seed(&mut *self)?;
            self.add(key.0 + BLOCK);
            entries += 1;
        }
        if ORDERED_MAPS {
            let buckets = capacity(entries).saturating_mul(BUCKET) - entries * VALUE;
            let index = capacity(entries).max(8).saturating_mul(INDEX_SLOT);
            self.add(VALUE + buckets + index + 2 * BLOCK);
        } else if entries == 0 {
            // An empty B-tree allocates nothing.
            self.add(VALUE);
        } else {
            // Every node but the root holds at least `BTREE_MIN_LEN` entries. The children's
            // `Value`s, counted by each child, live inside the nodes: a margin, not a gap.
            let nodes = 1 + entries / BTREE_MIN_LEN;
            self.add(VALUE + nodes.saturating_mul(BTREE_NODE + BLOCK));
        }
        Ok(())
    }
}

/// A map key, measured but not kept.
struct KeyLength(usize);

impl<'de> serde::Deserialize<'de> for KeyLength {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Length;
        impl Visitor<'_> for Length {
            type Value = KeyLength;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a string key")
            }
            fn visit_str<E>(self, text: &str) -> Result<KeyLength, E> {
                Ok(KeyLength(text.len()))
            }
        }
        deserializer.deserialize_str(Length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_texts_are_charged_as_the_densest_text() {
        assert_eq!(value_bytes("[0,0]"), 5 * MAX_VALUE_BYTES_PER_TEXT_BYTE);
    }

    #[test]
    fn long_strings_cost_about_their_length_and_dense_arrays_much_more() {
        let blob = format!("\"{}\"", "x".repeat(1 << 20));
        let cost = value_bytes(&blob);
        assert!((1 << 20..(1 << 20) + 4096).contains(&cost), "{cost}");
        let dense = format!("[{}0]", "0,".repeat(1 << 19));
        assert!(value_bytes(&dense) > VALUE / 2 * dense.len());
    }

    #[test]
    fn invalid_text_is_charged_as_the_densest() {
        let text = format!("[{}", "1,".repeat(5000));
        assert_eq!(
            value_bytes(&text),
            text.len() * MAX_VALUE_BYTES_PER_TEXT_BYTE
        );
    }
}
