//! Streamed replies (`ipcStream`): one request, many reply lines, handed out as a `Stream`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;

use crate::client::{check_data_code, is_set, text_of, Client};
use crate::error::Error;
use crate::notes::Note;
use crate::pending::StreamSink;
use crate::task::{Outgoing, Reply};

/// How many lines of one stream the client holds that its user has not taken yet. When they
/// are all there, the connection task stops reading the connection until the user takes one
/// (see [`ReplyStream`]).
pub const STREAM_BUFFER_LINES: usize = 32;

/// The replies to one streamed request, from [`Client::stream`] or [`Client::stream_as`].
///
/// Yields each item (`Ok`), then the final line's `data` when it has one, then `None`. An
/// `Err` is always the last item: after it the stream returns `None`.
///
/// - **Errors**: a final line that is an error (a top-level `code` such as `cancelled` or
///   `shutting_down`, or `data` holding a `code` such as `stream_required` or
///   `handler_error`) is an [`Error::Server`], after the items before it.
/// - **Timeout**: the client's request timeout applies to the wait for each line (the first
///   one, and each one after): when it passes, the stream yields [`Error::Timeout`], cancels
///   the request on the server, and ends. Time the user spends between polls does not count.
/// - **Dropping** the stream before its final line cancels it: `{"ipcReqID":..,"ipcCancel":true}`
///   is queued for the connection (Drop does not block), and whatever the server still sends
///   for it (items in flight, its `cancelled` line) is dropped quietly, never seen as a push.
/// - **Connection lost**: the stream yields the lines that had arrived, then
///   [`Error::ConnectionLost`] (or [`Error::Closed`] after [`Client::close`]), and ends. A
///   stream is never re-sent on a new connection.
/// - **Memory (backpressure)**: at most [`STREAM_BUFFER_LINES`] lines (each at most
///   [`max_reply_bytes`](crate::ClientBuilder::max_reply_bytes)) wait for the user. When a
///   stream's buffer is full, the client **stops reading the connection** until the user takes
///   a line or drops the stream: the server then pauses the stream, as the protocol intends.
///   Requests still go out meanwhile, but every other reply on the same connection waits
///   behind it (within its own timeout). Poll streams steadily, or give a consumer that may
///   stall for long its own [`Client`].
/// - **Decoding**: each line is decoded when it is taken, on the polling task (lines are at
///   most `max_reply_bytes`; a plain call moves replies over 1 MiB to a blocking thread, a
///   stream does not).
///
/// ```
/// use futures_util::StreamExt;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Tick { i: Option<u64> }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("doc.sock");
/// # let _server = pixl_ipc_server::Server::new(pixl_ipc_server::ServerConfig::new(&path)).start().await?;
/// # let client = pixl_ipc_client::Client::connect(&path).await?;
/// let data = serde_json::json!({"count": 1000, "interval": 10});
/// let mut ticks = client.stream_as::<_, Tick>("/ipcserver/test/stream", &data);
/// while let Some(tick) = ticks.next().await {
///     if tick?.i == Some(2) {
///         break; // dropping `ticks` cancels the rest on the server
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[must_use = "a stream does nothing until polled; dropping it cancels the request"]
pub struct ReplyStream<T> {
    client: Client,
    uri: String,
    id: String,
    timeout: Duration,
    state: State,
    /// The deadline for the line being waited for; set when a wait starts.
    deadline: Option<Pin<Box<Sleep>>>,
    _item: PhantomData<fn() -> T>,
}

enum State {
    /// Not polled yet: the request, or why it could not be made.
    Start(Result<Bytes, Error>),
    /// Waiting for room in the client's request queue.
    Sending(Pin<Box<dyn Future<Output = bool> + Send>>, Lines),
    /// Sent: reading its lines.
    Receiving(Lines),
    /// Over: the final line, an error, or a timeout was yielded.
    Done,
}

/// A per-line timeout this long or longer means none (a year: past anything a sleep takes).
const NO_LIMIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The stream's side of its [`StreamSink`].
struct Lines {
    items: mpsc::Receiver<Bytes>,
    ended: oneshot::Receiver<Error>,
}

impl<T> ReplyStream<T> {
    pub(crate) fn start(
        client: &Client,
        uri: &str,
        encoded: Result<(String, Bytes), Error>,
    ) -> ReplyStream<T> {
        let (id, start) = match encoded {
            Ok((id, line)) => (id, Ok(line)),
            Err(err) => (String::new(), Err(err)),
        };
        ReplyStream {
            client: client.clone(),
            uri: uri.to_owned(),
            id,
            timeout: client.shared.settings.request_timeout,
            state: State::Start(start),
            deadline: None,
            _item: PhantomData,
        }
    }

    /// Sets how long to wait for each line of this stream (the first item, and each next one),
    /// instead of the client's request timeout: for a "watch" or "tail" whose items may be far
    /// apart. A year or more (`Duration::MAX`) waits without a limit. Applies from the next wait on.
    ///
    /// ```no_run
    /// # async fn f(client: pixl_ipc_client::Client) {
    /// use std::time::Duration;
    /// let stats = client
    ///     .stream("/ipcserver/stats/watch", serde_json::json!({"interval": 60_000}))
    ///     .timeout(Duration::from_secs(90));
    /// # }
    /// ```
    pub fn timeout(mut self, per_line: Duration) -> Self {
        self.timeout = per_line;
        self
    }

    /// The request's `ipcReqID` (empty when it could not be encoded).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Ends the stream: cancels it on the server when its request went out and its final line
    /// has not come.
    fn finish(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Done);
        if matches!(state, State::Receiving(_)) {
            // The task sends the cancel only if the stream is still running there.
            self.client.shared.notes.push(Note::Cancel(self.id.clone()));
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<T, Error>>> {
        self.finish();
        Poll::Ready(Some(Err(error)))
    }

    /// Polls the deadline of the current wait, starting it if this is the wait's first poll.
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.timeout;
        if timeout >= NO_LIMIT {
            return false;
        }
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        deadline.as_mut().poll(cx).is_ready()
    }

    fn timeout_error(&self) -> Error {
        Error::Timeout {
            uri: self.uri.clone(),
            timeout: self.timeout,
        }
    }
}

impl<T: DeserializeOwned> ReplyStream<T> {
    /// One line of the stream: an item, the final value, the end, or an error.
    fn take_line(&mut self, line: &[u8]) -> Poll<Option<Result<T, Error>>> {
        let parsed = match serde_json::from_slice::<StreamLine<'_>>(line) {
            Ok(parsed) => parsed,
            Err(err) => {
                let error = pixl_ipc_protocol::FrameError::from_serde(&err, None);
                return self.fail(Error::Protocol(error.to_string()));
            }
        };
        let data = parsed.data.map_or("null", RawValue::get);
        // The same rule as the connection task's `is_more`: an item is `"ipcMore": true` exactly.
        if parsed.more.as_ref() == Some(&Value::Bool(true)) {
            return match serde_json::from_str(data) {
                Ok(item) => Poll::Ready(Some(Ok(item))),
                Err(err) => self.fail(Error::Decode(err.into())),
            };
        }
        // The final line: the stream is over on the server, nothing to cancel.
        self.state = State::Done;
        if let Some(code) = parsed.code.filter(is_set) {
            return Poll::Ready(Some(Err(Error::Server {
                code: text_of(&code),
                message: parsed.message.as_ref().map(text_of).unwrap_or_default(),
                data: None,
            })));
        }
        if let Err(err) = check_data_code(data) {
            return Poll::Ready(Some(Err(err)));
        }
        if data == "null" {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(
            serde_json::from_str(data).map_err(|err| Error::Decode(err.into())),
        ))
    }
}

/// A stream line's members; `data` stays text until it is decoded as the caller's type.
#[derive(Deserialize)]
struct StreamLine<'a> {
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(rename = "ipcMore", default)]
    more: Option<Value>,
}

impl<T: DeserializeOwned> Stream for ReplyStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Start(start) => {
                    let line = match std::mem::replace(start, Err(Error::Closed)) {
                        Ok(line) => line,
                        Err(err) => return this.fail(err),
                    };
                    let (items_tx, items_rx) = mpsc::channel(STREAM_BUFFER_LINES);
                    let (ended_tx, ended_rx) = oneshot::channel();
                    let outgoing = Outgoing {
                        id: this.id.clone(),
                        line,
                        reply: Reply::Stream(StreamSink {
                            items: items_tx,
                            ended: ended_tx,
                        }),
                    };
                    let requests = this.client.shared.requests.clone();
                    // Waits for queue space, and through a reconnect, within the first
                    // line's deadline.
                    let send = Box::pin(async move { requests.send(outgoing).await.is_ok() });
                    let lines = Lines {
                        items: items_rx,
                        ended: ended_rx,
                    };
                    this.state = State::Sending(send, lines);
                }
                State::Sending(send, _) => match send.as_mut().poll(cx) {
                    Poll::Ready(true) => {
                        let State::Sending(_, lines) =
                            std::mem::replace(&mut this.state, State::Done)
                        else {
                            unreachable!("matched just above")
                        };
                        this.state = State::Receiving(lines);
                    }
                    Poll::Ready(false) => {
                        let error = this.client.closed_error();
                        return this.fail(error);
                    }
                    Poll::Pending => {
                        if this.timed_out(cx) {
                            let error = this.timeout_error();
                            return this.fail(error);
                        }
                        return Poll::Pending;
                    }
                },
                State::Receiving(lines) => match lines.items.poll_recv(cx) {
                    Poll::Ready(Some(line)) => {
                        // The next wait gets its own deadline.
                        this.deadline = None;
                        return this.take_line(&line);
                    }
                    Poll::Ready(None) => {
                        // No final line: the task says why (the connection ended, or the line
                        // could not be taken). It has already forgotten the stream.
                        let error = match lines.ended.try_recv() {
                            Ok(error) => error,
                            Err(_) => this.client.closed_error(),
                        };
                        this.state = State::Done;
                        return Poll::Ready(Some(Err(error)));
                    }
                    Poll::Pending => {
                        if this.timed_out(cx) {
                            let error = this.timeout_error();
                            return this.fail(error);
                        }
                        return Poll::Pending;
                    }
                },
            }
        }
    }
}

impl<T> Drop for ReplyStream<T> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<T> std::fmt::Debug for ReplyStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Start(_) => "not started",
            State::Sending(..) => "sending",
            State::Receiving(_) => "receiving",
            State::Done => "done",
        };
        f.debug_struct("ReplyStream")
            .field("uri", &self.uri)
            .field("id", &self.id)
            .field("state", &state)
            .finish()
    }
}
