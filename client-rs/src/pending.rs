//! The table of requests waiting for their replies, keyed by `ipcReqID`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;

/// Where a request's outcome goes: its reply line, not yet decoded (the caller decodes it,
/// under its own deadline), or why there is none.
pub(crate) type ReplySender = oneshot::Sender<Result<Bytes, Error>>;

/// Where a streamed request's lines go: each line as it arrives, into a bounded buffer (see
/// [`STREAM_BUFFER_LINES`](crate::stream::STREAM_BUFFER_LINES)), and, when the stream ends
/// without a final line (connection lost, client closed, a line too long), why.
pub(crate) struct StreamSink {
    pub(crate) items: mpsc::Sender<Bytes>,
    pub(crate) ended: oneshot::Sender<Error>,
}

impl StreamSink {
    /// Ends the stream with `error`, after the lines already buffered.
    pub(crate) fn fail(self, error: Error) {
        let _ = self.ended.send(error);
    }
}

/// The hash of the tables' ids: this client's own `rq<n>` ids, a few bytes each, hashed twice per
/// call. The default SipHash cost ~300 instructions per call; its protection against chosen
/// keys is not needed, as only this client inserts keys (a server's ids are only looked up, and
/// a lookup of a colliding id costs one probe sequence).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // FxHash's step, a word at a time.
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(SEED);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(SEED);
        }
    }

    fn finish(&self) -> u64 {
        // The table indexes by the low bits, and those of a product depend only on the low bits
        // of what was multiplied: for an id of one word (`rq0` to `rq999999`) that is the
        // constant `rq`. The high bits are well mixed; rotate them down (as rustc-hash 2 does).
        self.0.rotate_left(26)
    }
}

type IdMap<T> = HashMap<String, T, BuildHasherDefault<IdHasher>>;

/// Requests written to the connection and not yet answered. Kept in the shared [`Wire`](crate::wire::Wire)
/// (the task inserts, the task or a reading caller routes); every
/// entry is settled exactly once: by its reply, by a connection failure, or dropped because the
/// caller stopped waiting (timeout or a cancelled future).
#[derive(Default)]
pub(crate) struct PendingRequests {
    waiting: IdMap<ReplySender>,
    /// Streams still running: removed by their final line, a cancel, or a connection failure.
    streams: IdMap<StreamSink>,
}

impl PendingRequests {
    pub(crate) fn insert(&mut self, id: String, reply: ReplySender) {
        self.waiting.insert(id, reply);
    }

    pub(crate) fn insert_stream(&mut self, id: String, sink: StreamSink) {
        self.streams.insert(id, sink);
    }

    /// The running stream `id`, if it is one.
    pub(crate) fn stream(&self, id: &str) -> Option<&StreamSink> {
        self.streams.get(id)
    }

    /// Forgets the stream `id`; `None` when it is not running (ended, or never a stream).
    pub(crate) fn remove_stream(&mut self, id: &str) -> Option<StreamSink> {
        self.streams.remove(id)
    }

    /// Hands `outcome` to the request `id`. False when nobody waits for it any more (a late
    /// reply after a timeout, or an id this client never sent); the entry is gone either way.
    pub(crate) fn complete(&mut self, id: &str, outcome: Result<Bytes, Error>) -> bool {
        match self.waiting.remove(id) {
            Some(reply) => reply.send(outcome).is_ok(),
            None => false,
        }
    }

    /// Settles every waiting request with an error; returns how many there were.
    pub(crate) fn fail_all(&mut self, error: &Error) -> usize {
        let count = self.waiting.len() + self.streams.len();
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, sink) in self.streams.drain() {
            sink.fail(error.clone());
        }
        count
    }

    /// How many plain calls wait for their replies (streams not counted).
    pub(crate) fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// Forgets the call `id`, whose caller stopped waiting (timed out, or its future dropped),
    /// so an unanswered request does not hold memory until the connection ends. Streams are
    /// left alone: a dropped stream is forgotten by its cancel. A reply that comes later is
    /// dropped as unknown.
    pub(crate) fn forget(&mut self, id: &str) {
        self.waiting.remove(id);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.len() + self.streams.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(data: u8) -> Bytes {
        Bytes::from(vec![data])
    }

    /// Registers callers `rq0`..`rq{count-1}` and returns their receivers, in that order.
    fn waiting(
        table: &mut PendingRequests,
        count: usize,
    ) -> Vec<oneshot::Receiver<Result<Bytes, Error>>> {
        (0..count)
            .map(|i| {
                let (tx, rx) = oneshot::channel();
                table.insert(format!("rq{i}"), tx);
                rx
            })
            .collect()
    }

    #[tokio::test]
    async fn a_reply_reaches_its_caller_once() {
        let mut table = PendingRequests::default();
        let (tx, rx) = oneshot::channel();
        table.insert("rq0".into(), tx);
        assert!(table.complete("rq0", Ok(message(1))));
        assert_eq!(rx.await.unwrap().unwrap(), message(1));
        assert!(
            !table.complete("rq0", Ok(message(2))),
            "a second reply finds nobody"
        );
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_late_reply_after_the_caller_gave_up_is_dropped_and_freed() {
        let mut table = PendingRequests::default();
        let (tx, rx) = oneshot::channel();
        table.insert("rq0".into(), tx);
        drop(rx);
        assert!(!table.complete("rq0", Ok(message(1))));
        assert_eq!(table.len(), 0);
    }

    #[tokio::test]
    async fn fail_all_settles_every_request() {
        let mut table = PendingRequests::default();
        let receivers = waiting(&mut table, 5);
        assert_eq!(table.fail_all(&Error::Closed), 5);
        for rx in receivers {
            assert!(matches!(rx.await.unwrap(), Err(Error::Closed)));
        }
        assert_eq!(table.len(), 0);
    }

    #[tokio::test]
    async fn fail_all_ends_streams_after_their_buffered_lines() {
        let mut table = PendingRequests::default();
        let (items_tx, mut items_rx) = mpsc::channel(4);
        let (ended_tx, ended_rx) = oneshot::channel();
        table.insert_stream(
            "rq0".into(),
            StreamSink {
                items: items_tx,
                ended: ended_tx,
            },
        );
        table
            .stream("rq0")
            .unwrap()
            .items
            .try_send(message(1))
            .unwrap();
        assert_eq!(table.fail_all(&Error::Closed), 1);
        assert_eq!(items_rx.recv().await.unwrap(), message(1));
        assert!(items_rx.recv().await.is_none(), "no more lines");
        assert!(matches!(ended_rx.await.unwrap(), Error::Closed));
        assert_eq!(table.len(), 0);
        assert!(table.remove_stream("rq0").is_none());
    }

    #[test]
    fn forgetting_leaves_streams_for_their_cancel() {
        let mut table = PendingRequests::default();
        let (items_tx, items_rx) = mpsc::channel(1);
        let (ended_tx, _ended_rx) = oneshot::channel();
        table.insert_stream(
            "rq0".into(),
            StreamSink {
                items: items_tx,
                ended: ended_tx,
            },
        );
        drop(items_rx);
        table.forget("rq0");
        assert!(
            table.remove_stream("rq0").is_some(),
            "the cancel still finds it"
        );
    }

    #[test]
    fn many_ids_are_kept_apart() {
        let mut table = PendingRequests::default();
        let receivers = waiting(&mut table, 10_000);
        assert_eq!(table.len(), 10_000);
        // Ids that share a prefix, or differ only past the first 8 bytes, are different keys.
        assert!(!table.complete("rq", Ok(message(0))));
        assert!(!table.complete("rq12345678", Ok(message(0))));
        for i in (0..10_000).rev() {
            assert!(table.complete(&format!("rq{i}"), Ok(message(1))));
        }
        assert_eq!(table.len(), 0);
        drop(receivers);
    }

    #[test]
    fn ids_spread_over_the_low_bits_the_table_indexes_by() {
        use std::hash::BuildHasher;
        // The table starts each probe at `hash & (buckets - 1)`. `rq0` to `rq999999` fit one
        // word whose low two bytes are always `rq`, and the low bits of a product depend only
        // on the low bits of its factors: without a final mix every such id started at one of
        // 32 buckets, so thousands of calls in flight probed one long run of groups.
        let build = BuildHasherDefault::<IdHasher>::default();
        let starts: std::collections::HashSet<u64> = (0..10_000)
            .map(|i| build.hash_one(format!("rq{i}")) & 0x3fff)
            .collect();
        // Random hashes would give about 7,800 of 16,384.
        assert!(
            starts.len() > 6_000,
            "{} distinct start buckets",
            starts.len()
        );
    }

    #[test]
    fn forgetting_frees_only_that_call() {
        let mut table = PendingRequests::default();
        let (kept_tx, _kept_rx) = oneshot::channel();
        let (gone_tx, _gone_rx) = oneshot::channel();
        table.insert("kept".into(), kept_tx);
        table.insert("gone".into(), gone_tx);
        table.forget("gone");
        table.forget("never sent");
        assert_eq!(table.len(), 1);
        assert!(
            !table.complete("gone", Ok(message(1))),
            "a late reply finds nobody"
        );
        assert!(table.complete("kept", Ok(message(1))));
    }
}
