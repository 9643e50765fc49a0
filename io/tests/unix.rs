//! The readable-only UNIX stream halves, on real socket pairs.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use pixl_ipc_io::unix;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Everything the peer sends until it closes, failing the test if that takes too long.
async fn read_all(reader: &mut unix::UnixReader, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut received))
        .await
        .unwrap_or_else(|_| panic!("{what}"))
        .expect("read");
    received
}

/// A payload far larger than a socket's send buffer, so the writer must block and be woken.
fn big_payload() -> Vec<u8> {
    (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn a_blocked_writer_resumes_when_the_peer_reads_and_nothing_is_lost() {
    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    let (_reader, mut writer) = unix::split(ours).expect("split");
    let (mut their_reader, _their_writer) = unix::split(theirs).expect("split");
    let payload = big_payload();
    let sent = payload.clone();
    let writing = tokio::spawn(async move {
        writer.write_all(&sent).await?;
        writer.flush().await?;
        writer.shutdown().await
    });
    // Let the writer fill the socket and block before anyone reads.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !writing.is_finished(),
        "8 MiB cannot fit in a socket buffer"
    );
    let received = read_all(
        &mut their_reader,
        "the reader finishes: the writer was woken each time it blocked",
    )
    .await;
    writing.await.expect("writer task").expect("write");
    assert_eq!(received.len(), payload.len());
    assert!(received == payload, "bytes arrive intact and in order");
}

#[tokio::test]
async fn dropping_the_writer_gives_the_peer_end_of_file() {
    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    let (_reader, mut writer) = unix::split(ours).expect("split");
    let (mut their_reader, _their_writer) = unix::split(theirs).expect("split");
    writer.write_all(b"last words\n").await.expect("write");
    drop(writer);
    let received = read_all(&mut their_reader, "EOF arrives").await;
    assert_eq!(received, b"last words\n");
}

#[tokio::test]
async fn reads_deliver_what_arrives_in_pieces() {
    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    let (mut reader, _writer) = unix::split(ours).expect("split");
    let (_their_reader, mut their_writer) = unix::split(theirs).expect("split");
    let feeding = tokio::spawn(async move {
        for piece in [&b"{\"a\":"[..], b"1}", b"\n"] {
            their_writer.write_all(piece).await.expect("write");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let mut line = Vec::new();
    let mut buf = [0u8; 64];
    while !line.ends_with(b"\n") {
        let read = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
            .await
            .expect("each piece wakes the reader")
            .expect("read");
        assert!(read > 0, "no EOF before the newline");
        line.extend_from_slice(&buf[..read]);
    }
    assert_eq!(line, b"{\"a\":1}\n");
    feeding.await.expect("feeder");
}

#[tokio::test]
async fn a_write_queue_delivers_every_chunk_in_order_through_partial_writes() {
    use bytes::Bytes;
    use pixl_ipc_io::unix::WriteQueue;

    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    let (_reader, mut writer) = unix::split(ours).expect("split");
    let (mut their_reader, _their_writer) = unix::split(theirs).expect("split");
    // Chunks of uneven sizes (1 byte to 300 KiB), far more in total than the socket buffers
    // hold, so writes end in the middle of chunks.
    let mut queue = WriteQueue::default();
    let mut expected = Vec::new();
    for (index, size) in [1usize, 7, 300 * 1024, 13, 64 * 1024 + 3, 2, 1024]
        .iter()
        .cycle()
        .take(70)
        .enumerate()
    {
        let chunk: Vec<u8> = (0..*size).map(|i| ((i + index) % 253) as u8).collect();
        expected.extend_from_slice(&chunk);
        queue.push(Bytes::from(chunk));
    }
    assert_eq!(queue.len(), expected.len());
    let total = expected.len();
    let writing = tokio::spawn(async move {
        let mut writes = 0usize;
        while !queue.is_empty() {
            std::future::poll_fn(|cx| queue.poll_write_some(std::pin::Pin::new(&mut writer), cx))
                .await?;
            writes += 1;
        }
        drop(writer);
        std::io::Result::Ok(writes)
    });
    let received = read_all(&mut their_reader, "all bytes arrive").await;
    let writes = writing.await.expect("writer task").expect("writes");
    assert!(writes > 1, "the socket buffer forced partial writes");
    assert_eq!(received.len(), total);
    assert!(received == expected, "bytes arrive intact and in order");
}
