//! Codec micro-benchmarks: decoding and encoding the original's messages per size, beside plain
//! serde_json on the same bytes, so any faster path has a number next to the simple one.
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pixl_ipc_benches::{sized_message, SIZES};
use pixl_ipc_protocol::json::{
    encode_raw_response_line, encode_response_line, raw_response_pieces,
};
use pixl_ipc_protocol::{
    encode_line, JsonLinesCodec, LineSplitter, RawId, RawRequest, RawResponse, Request, Response,
    DEFAULT_MAX_MESSAGE_BYTES,
};
use serde::de::DeserializeOwned;
use tokio_util::codec::Decoder;

fn request_line(size: usize) -> Vec<u8> {
    let request = serde_json::json!({"ipcReqID": "rq0", "uri": "/ipcserver/test/echo", "data": sized_message(size), "pid": 1, "userAgent": "bench"});
    let mut line = serde_json::to_vec(&request).expect("encodes");
    line.push(b'\n');
    line
}

/// One line through the framing codec, as a connection decodes it.
fn decode_one<T: DeserializeOwned>(codec: &mut JsonLinesCodec<T>, line: &[u8]) -> T {
    let mut buf = BytesMut::from(line);
    codec
        .decode(&mut buf)
        .expect("io")
        .expect("a line")
        .expect("a request")
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for size in SIZES {
        let line = request_line(size);
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("codec", format!("{size}K")),
            &line,
            |b, line| {
                let mut codec = JsonLinesCodec::<Request>::new();
                b.iter(|| decode_one(&mut codec, line));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("codec, data kept as text (server)", format!("{size}K")),
            &line,
            |b, line| {
                let mut codec = JsonLinesCodec::<RawRequest>::new();
                b.iter(|| decode_one(&mut codec, line));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("serde_json baseline", format!("{size}K")),
            &line,
            |b, line| {
                b.iter(|| {
                    serde_json::from_slice::<Request>(&line[..line.len() - 1]).expect("a request")
                });
            },
        );
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for size in SIZES {
        let data = sized_message(size);
        let reply = serde_json::json!({"ipcReqID": "rq0", "data": data});
        let id = RawId::from(&serde_json::json!("rq0"));
        group.bench_with_input(
            BenchmarkId::new("encode_response_line (fast writer)", format!("{size}K")),
            &data,
            |b, data| {
                b.iter(|| {
                    encode_response_line(&Response {
                        ipc_req_id: Some(&id),
                        data,
                    })
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("encode_line", format!("{size}K")),
            &reply,
            |b, reply| {
                b.iter(|| encode_line(reply).expect("encodes"));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("serde_json baseline", format!("{size}K")),
            &reply,
            |b, reply| {
                b.iter(|| serde_json::to_vec(reply).expect("encodes"));
            },
        );
    }
    group.finish();
}

/// The server's echo path end to end in memory: a request line decoded with its data kept as
/// text, then the reply line written from that text and the request's id.
fn echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo");
    for size in SIZES {
        let line = request_line(size);
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("decode + encode_raw_response_line", format!("{size}K")),
            &line,
            |b, line| {
                let mut codec = JsonLinesCodec::<RawRequest>::new();
                b.iter(|| {
                    let request = decode_one(&mut codec, line);
                    encode_raw_response_line(&RawResponse {
                        ipc_req_id: request.ipc_req_id.as_ref(),
                        data: request.data.as_deref(),
                    })
                });
            },
        );
        // What the server does now: from 8 KiB the data is moved into the reply, not copied.
        group.bench_with_input(
            BenchmarkId::new("decode + raw_response_pieces", format!("{size}K")),
            &line,
            |b, line| {
                let mut codec = JsonLinesCodec::<RawRequest>::new();
                b.iter(|| {
                    let request = decode_one(&mut codec, line);
                    raw_response_pieces(request.ipc_req_id.as_ref(), request.data)
                });
            },
        );
    }
    group.finish();
}

/// A reply line through the line splitter alone, as the Rust client's reader takes it (it
/// routes the raw line; each caller decodes its own reply).
fn split(c: &mut Criterion) {
    let mut group = c.benchmark_group("split");
    for size in SIZES {
        let reply = serde_json::json!({"ipcReqID": "rq0", "data": sized_message(size)});
        let mut line = serde_json::to_vec(&reply).expect("encodes");
        line.push(b'\n');
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("LineSplitter (client)", format!("{size}K")),
            &line,
            |b, line| {
                let mut splitter = LineSplitter::new(DEFAULT_MAX_MESSAGE_BYTES);
                b.iter(|| {
                    let mut buf = BytesMut::from(&line[..]);
                    splitter
                        .decode(&mut buf)
                        .expect("io")
                        .expect("a line")
                        .expect("within the limit")
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decode, split, encode, echo);
criterion_main!(benches);
