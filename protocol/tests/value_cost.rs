//! `cost::value_bytes` is an upper bound of what parsing into a `Value` really allocates,
//! measured with a counting allocator over dense, wide, deep, escaped and random JSON.
//! One test function only: the allocator counts every thread of the process.
#![allow(unsafe_code)] // A counting global allocator needs `unsafe impl GlobalAlloc`.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use pixl_ipc_protocol::cost::value_bytes;
use serde_json::{json, Value};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed straight to the system allocator with the same arguments; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // While moving, both blocks exist.
        grew(new_size);
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak bytes allocated while parsing `text` into a `Value` (the tree stays alive until the
/// peak is read).
fn parse_peak(text: &str) -> usize {
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let value: Value = serde_json::from_str(text).unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    drop(value);
    peak
}

#[test]
fn the_estimate_bounds_the_real_allocation_for_every_shape() {
    let mut texts = vec![
        format!("[{}0]", "0,".repeat(200_000)),
        format!("[{}[]]", "[],".repeat(100_000)),
        format!("[{}{{}}]", "{},".repeat(100_000)),
        format!("[{}\"\"]", "\"\",".repeat(100_000)),
        format!(
            "{{{}\"z\":0}}",
            (0..50_000)
                .map(|i| format!("\"{i}\":0,"))
                .collect::<String>()
        ),
        format!("{{{}\"\":0}}", "\"\":0,".repeat(50_000)),
        // One-entry objects: a whole B-tree node each when maps are not `preserve_order`.
        format!("[{}{{\"\":0}}]", "{\"\":0},".repeat(50_000)),
        format!("[{}{{\"\":0}}]", "{\"\":0},".repeat(500)),
        format!("\"{}\"", "\\n\\u00e9".repeat(100_000)),
        format!("{}0{}", "[".repeat(127), "]".repeat(127)),
        json!({"k": "x".repeat(1 << 20), "n": [1.5, -2, true, null]}).to_string(),
    ];
    // Pseudo-random documents of mixed shapes.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..40 {
        let mut doc = Vec::new();
        for i in 0..(next() % 3000) {
            doc.push(match next() % 5 {
                0 => json!(i),
                1 => json!("s".repeat((next() % 40) as usize)),
                2 => json!({ format!("key{i}"): [i, "v", {"x": null}] }),
                3 => json!([[], {}, [1, 2, 3]]),
                _ => json!(next() as f64 / 7.0),
            });
        }
        texts.push(Value::Array(doc).to_string());
    }
    for text in &texts {
        let estimate = value_bytes(text);
        let real = parse_peak(text);
        assert!(
            real <= estimate + text.len(),
            "parse of {} bytes ({}...) allocated {real}, estimate {estimate}",
            text.len(),
            &text[..text.len().min(40)]
        );
        // And the estimate is not wildly pessimistic for large texts (repeated keys collapse
        // into one entry, which only a parse can know).
        let repeated_keys = text.starts_with("{\"\":0");
        assert!(
            repeated_keys || estimate <= 8 * real + 64 * 1024,
            "estimate {estimate} for a parse of {real} ({}...)",
            &text[..text.len().min(40)]
        );
    }
}
