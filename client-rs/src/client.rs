//! The `Client` handle: cheap to clone, usable from many tasks, one connection underneath.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pixl_ipc_protocol::json::{encode_request_ref, RequestRef};
use pixl_ipc_protocol::{decode_line, Push, ServerMessage};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::address::Address;
use crate::builder::ClientBuilder;
use crate::close::CloseSignal;
use crate::error::Error;
use crate::notes::{Note, Notes};
use crate::pushes::{Next, PushHub, PushLimits, Queue};
use crate::settings::{Settings, MAX_PUSH_BUFFER_PUSHES};
use crate::state::ConnectionState;
use crate::stream::ReplyStream;
use crate::task::{self, Outgoing, Reply, TaskContext};
use crate::transport::Dialer;
use crate::wire::{AwaitReply, Wire};

/// How many requests may wait for the connection task before callers wait too.
const QUEUE_DEPTH: usize = 1024;
/// Replies up to this size are decoded right where the caller awaits them (a few ms at most, in
/// a release build); longer ones on a blocking thread, so the caller's deadline holds while they
/// decode. A decode cannot be interrupted, but its caller need not wait for it; what it can cost
/// is bounded by `max_reply_bytes`.
const INLINE_DECODE_BYTES: usize = 1024 * 1024;

/// An async pixl-ipc client.
///
/// Clone it freely: clones share one connection and one background task, and any number of
/// calls can be in flight at once, matched to their replies by `ipcReqID`. Every call settles:
/// with the reply, a timeout, or an error naming why (it never hangs). The connection closes
/// when [`close`](Self::close) is called or the last clone is dropped.
///
/// ```no_run
/// use pixl_ipc_client::Client;
/// use serde_json::json;
///
/// # async fn run() -> Result<(), pixl_ipc_client::Error> {
/// let client = Client::connect("/var/tmp/my_ipc_server.sock").await?;
/// let reply = client.send("/ipcserver/test/echo", json!({"ping": "me"})).await?;
/// assert_eq!(reply, json!({"ping": "me"}));
/// client.close().await;
/// # Ok(())
/// # }
/// ```
///
/// Cancel safety: dropping a call's future abandons the request; its reply, if one comes, is
/// dropped and its bookkeeping freed.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    address: Address,
    pub(crate) settings: Settings,
    pub(crate) requests: mpsc::Sender<Outgoing>,
    /// Streams stopped early, for the task to cancel on the wire, and calls given up on, for
    /// it to forget.
    pub(crate) notes: Arc<Notes>,
    /// The connection's receiving side, which a waiting caller may read itself.
    wire: Arc<Wire>,
    state: watch::Receiver<ConnectionState>,
    pushes: Arc<PushHub>,
    close: Arc<CloseSignal>,
    next_id: AtomicU64,
    pid: u32,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: stop the task even if it is waiting to reconnect.
        self.close.close();
    }
}

impl Client {
    /// A builder with every setting at its default.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to `address` with the default settings (see [`ClientBuilder`]).
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    pub async fn connect(address: impl crate::ToAddress) -> Result<Client, Error> {
        ClientBuilder::default().connect(address).await
    }

    pub(crate) async fn start(settings: Settings, address: Address) -> Result<Client, Error> {
        let dialer = Dialer {
            address: address.clone(),
            timeout: settings.connect_timeout,
            max_message_bytes: settings.max_message_bytes,
            #[cfg(feature = "ws")]
            ws: settings.ws.clone(),
        };
        let connection = dialer.connect().await?;
        let (requests_tx, requests_rx) = mpsc::channel(QUEUE_DEPTH);
        let notes = Arc::new(Notes::default());
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connected);
        let pushes = Arc::new(PushHub::new(PushLimits {
            max_pushes: MAX_PUSH_BUFFER_PUSHES,
            max_bytes: settings.max_push_buffer_bytes,
        }));
        let close = Arc::new(CloseSignal::default());
        // Callers read the socket themselves only where they share the task's thread: on this
        // thread, if it runs a current-thread runtime (the task is spawned on it).
        let reading_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|runtime| {
                runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread
            })
            .then(|| std::thread::current().id());
        let wire = Arc::new(Wire::new(
            Arc::clone(&pushes),
            settings.max_reply_bytes,
            reading_thread,
        ));
        let context = TaskContext {
            dialer,
            requests: requests_rx,
            notes: Arc::clone(&notes),
            state: state_tx,
            pushes: Arc::clone(&pushes),
            close: Arc::clone(&close),
            policy: settings.reconnect.clone(),
            wire: Arc::clone(&wire),
        };
        tokio::spawn(task::run(context, connection));
        Ok(Client {
            shared: Arc::new(Shared {
                address,
                settings,
                requests: requests_tx,
                notes,
                wire,
                state: state_rx,
                pushes,
                close,
                next_id: AtomicU64::new(0),
                pid: std::process::id(),
            }),
        })
    }

    /// Sends `data` to `uri` and returns the reply's `data`. `data` is a `Value` or a `&Value`:
    /// it is only read, so data sent many times need not be cloned for each call.
    ///
    /// A reply with a top-level `code` (a request-level error such as `no_uri`) is an
    /// [`Error::Server`]. A handler-level error (`data` holding `code` and `message`, such as
    /// `no_handler_found`) is returned as `Ok(data)`, exactly as the original client returns it
    /// without `codeToErr`; use [`call`](Self::call) to get those as errors too.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("doc.sock");
    /// # let _server = pixl_ipc_server::Server::new(pixl_ipc_server::ServerConfig::new(&path)).start().await?;
    /// # let client = pixl_ipc_client::Client::connect(&path).await?;
    /// let reply = client.send("/ipcserver/test/delay", serde_json::json!({"delay": 10})).await?;
    /// assert_eq!(reply["delay"], 10);
    /// // A handler-level error is data for `send`:
    /// let reply = client.send("/no/such/route", serde_json::json!({})).await?;
    /// assert_eq!(reply["code"], "no_handler_found");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// See [`Error`] for which failure is reported how.
    pub async fn send(&self, uri: &str, data: impl Borrow<Value>) -> Result<Value, Error> {
        self.send_with_timeout(uri, data, self.shared.settings.request_timeout)
            .await
    }

    /// [`send`](Self::send) with a timeout for this call only.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn send_with_timeout(
        &self,
        uri: &str,
        data: impl Borrow<Value>,
        timeout: Duration,
    ) -> Result<Value, Error> {
        self.request(uri, data.borrow(), timeout, decode_value)
            .await
    }

    /// Sends `request` (any `Serialize`) to `uri` and decodes the reply's `data` as `Resp`.
    /// Unlike [`send`](Self::send), a reply whose `data` is an object with a `code` is an
    /// [`Error::Server`] (the original client's `codeToErr` rule).
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize)]
    /// struct Delay { delay: u64 }
    /// #[derive(Deserialize)]
    /// struct Delayed { delay: u64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("doc.sock");
    /// # let _server = pixl_ipc_server::Server::new(pixl_ipc_server::ServerConfig::new(&path)).start().await?;
    /// # let client = pixl_ipc_client::Client::connect(&path).await?;
    /// let reply: Delayed = client.call("/ipcserver/test/delay", &Delay { delay: 5 }).await?;
    /// assert_eq!(reply.delay, 5);
    /// // A handler-level error is an error for `call`:
    /// let err = client.call::<_, serde_json::Value>("/no/such/route", &()).await.unwrap_err();
    /// assert!(matches!(err, pixl_ipc_client::Error::Server { code, .. } if code == "no_handler_found"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`send`](Self::send), plus `Server` for handler-level errors and [`Error::Decode`]
    /// when `data` does not fit `Resp`.
    ///
    /// The reply's `data` is decoded straight into `Resp`, without a [`Value`] tree in between.
    pub async fn call<Req, Resp>(&self, uri: &str, request: &Req) -> Result<Resp, Error>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned + Send + 'static,
    {
        let data = serde_json::to_value(request).map_err(|err| Error::Encode(err.into()))?;
        let timeout = self.shared.settings.request_timeout;
        self.request(uri, &data, timeout, decode_typed::<Resp>)
            .await
    }

    /// Sends a one-way message (`ipcNoReply`): the server runs the handler and answers nothing.
    /// Resolves once the message is queued on the connection; delivery is not confirmed.
    ///
    /// # Errors
    /// The transport errors of [`send`](Self::send).
    pub async fn notify(&self, uri: &str, data: impl Borrow<Value>) -> Result<(), Error> {
        let (id, line) = self.encode(uri, data.borrow(), true)?;
        let timeout = self.shared.settings.request_timeout;
        let outgoing = Outgoing {
            id,
            line,
            reply: Reply::None,
        };
        match tokio::time::timeout(timeout, self.shared.requests.send(outgoing)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(Error::Timeout {
                uri: uri.to_owned(),
                timeout,
            }),
        }
    }

    /// Sends a request and decodes its reply line with `decode`, all within `timeout`.
    async fn request<T: Send + 'static>(
        &self,
        uri: &str,
        data: &Value,
        timeout: Duration,
        decode: fn(&[u8]) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let number = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (id, line) = self.encode_numbered(number, uri, data, false, false)?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let outgoing = Outgoing {
            id,
            line,
            reply: Reply::Call(reply_tx),
        };
        let exchange = async {
            // From the moment the task has the call until the outcome is in, dropping this (a
            // timeout, a dropped future) tells the task to forget the call. Not before: a call
            // given up while it waits for queue space is in no table, and a note for it would
            // only pile up while the task reconnects (it takes no notes then).
            let mut forget = ForgetIfAbandoned {
                notes: &self.shared.notes,
                number,
                armed: false,
            };
            // Waits for queue space, and through a reconnect, within the same deadline.
            if self.shared.requests.send(outgoing).await.is_err() {
                return Err(self.closed_error());
            }
            forget.armed = true;
            // Reads the connection itself while no other caller does (see `wire`).
            let outcome = AwaitReply::new(&self.shared.wire, reply_rx, number).await;
            // Settled: the task has removed the entry (or ended).
            forget.armed = false;
            let line = outcome.unwrap_or_else(|_| Err(self.closed_error()))?;
            if line.len() <= INLINE_DECODE_BYTES {
                return decode(&line);
            }
            // Off this task, so the timeout below still fires while a large reply decodes.
            tokio::task::spawn_blocking(move || decode(&line))
                .await
                .unwrap_or_else(|err| {
                    Err(Error::Protocol(format!("decoding the reply failed: {err}")))
                })
        };
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(timeout, exchange).await {
            // The timer is looked at only after the reply: one that was ready only after the
            // deadline (a long decode, a busy thread) is still a timeout.
            Ok(outcome) if started.elapsed() <= timeout => outcome,
            _ => Err(Error::Timeout {
                uri: uri.to_owned(),
                timeout,
            }),
        }
    }

    /// Sends `data` to `uri` as a streamed request (`ipcStream`) and returns its replies as a
    /// [`Stream`](futures_util::Stream): each item the server sends, then the final line's
    /// `data` when it has one (not `null`). On a route that does not stream, the one reply.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use serde_json::json;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("doc.sock");
    /// # let _server = pixl_ipc_server::Server::new(pixl_ipc_server::ServerConfig::new(&path)).start().await?;
    /// # let client = pixl_ipc_client::Client::connect(&path).await?;
    /// let mut items = client.stream("/ipcserver/test/stream", json!({"count": 3}));
    /// while let Some(item) = items.next().await {
    ///     println!("{}", item?); // {"i":0} {"i":1} {"i":2} {"done":3}
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Nothing is sent until the stream is first polled. Errors follow the
    /// [`call`](Self::call) rule (a top-level `code`, or `data` holding a `code`, is an
    /// [`Error::Server`]), and so do the other failures: see [`ReplyStream`] for timeouts,
    /// cancelling, connection loss and how much is buffered.
    pub fn stream(&self, uri: &str, data: impl Borrow<Value>) -> ReplyStream<Value> {
        ReplyStream::start(self, uri, self.encode_stream(uri, data.borrow()))
    }

    /// [`stream`](Self::stream) with `request` (any `Serialize`) as the data and each item
    /// decoded straight into `T`. An item that does not fit `T` is an [`Error::Decode`], after
    /// which the stream ends (and is cancelled).
    pub fn stream_as<Req, T>(&self, uri: &str, request: &Req) -> ReplyStream<T>
    where
        Req: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let encoded = serde_json::to_value(request)
            .map_err(|err| Error::Encode(err.into()))
            .and_then(|data| self.encode_stream(uri, &data));
        ReplyStream::start(self, uri, encoded)
    }

    /// A streamed request's id and line (`"ipcStream":true`).
    fn encode_stream(&self, uri: &str, data: &Value) -> Result<(String, bytes::Bytes), Error> {
        self.encode_as(uri, data, false, true)
    }

    /// A request's id (for matching its reply) and its encoded line.
    fn encode(
        &self,
        uri: &str,
        data: &Value,
        no_reply: bool,
    ) -> Result<(String, bytes::Bytes), Error> {
        self.encode_as(uri, data, no_reply, false)
    }

    fn encode_as(
        &self,
        uri: &str,
        data: &Value,
        no_reply: bool,
        stream: bool,
    ) -> Result<(String, bytes::Bytes), Error> {
        let number = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.encode_numbered(number, uri, data, no_reply, stream)
    }

    /// [`encode_as`](Self::encode_as) with the id's number drawn already.
    fn encode_numbered(
        &self,
        number: u64,
        uri: &str,
        data: &Value,
        no_reply: bool,
        stream: bool,
    ) -> Result<(String, bytes::Bytes), Error> {
        let id_value = Value::String(request_id(number));
        let line = encode_request_ref(&RequestRef {
            ipc_req_id: Some(&id_value),
            uri: Some(uri),
            data,
            pid: Some(self.shared.pid),
            user_agent: Some(&self.shared.settings.user_agent),
            no_reply,
            close_after_reply: false,
            stream,
        });
        let size = line.len() - 1;
        let limit = self.shared.settings.max_message_bytes;
        if size > limit {
            return Err(Error::MessageTooLarge { size, limit });
        }
        // The id string back out of its `Value`, not a copy of it.
        let Value::String(id) = id_value else {
            unreachable!("built as a string above")
        };
        Ok((id, line))
    }

    /// The error for a call made after the task has stopped.
    pub(crate) fn closed_error(&self) -> Error {
        match &*self.shared.state.borrow() {
            ConnectionState::Closed(reason) => reason.to_error(&self.shared.address),
            _ => Error::Closed,
        }
    }

    /// The connection's state now.
    pub fn state(&self) -> ConnectionState {
        self.shared.state.borrow().clone()
    }

    /// A receiver that sees every state change (connected, reconnecting, closed).
    pub fn state_changes(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.clone()
    }

    /// Subscribes to server pushes (lines without `ipcReqID`) from now on.
    ///
    /// ```no_run
    /// # async fn run(client: pixl_ipc_client::Client) {
    /// let mut pushes = client.subscribe();
    /// while let Ok(push) = pushes.recv().await {
    ///     println!("{:?}: {}", push.uri, push.data);
    /// }
    /// # }
    /// ```
    ///
    /// Each subscription buffers at most 1024 pushes and
    /// [`max_push_buffer_bytes`](ClientBuilder::max_push_buffer_bytes) bytes it has not taken
    /// yet; past that it misses the oldest (and [`Subscription::recv`] says how many).
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            queue: self.shared.pushes.subscribe(),
        }
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// Closes the connection: every call in flight or waiting fails with [`Error::Closed`], the
    /// background task ends, and later calls fail the same way. Resolves once that is done.
    pub async fn close(&self) {
        self.shared.close.close();
        let mut state = self.shared.state.clone();
        let _ = state
            .wait_for(|state| matches!(state, ConnectionState::Closed(_)))
            .await;
    }
}

/// A stream of server pushes, from [`Client::subscribe`].
pub struct Subscription {
    queue: Arc<Queue>,
}

/// Why [`Subscription::recv`] returned no push.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// This subscriber fell behind by this many pushes, which it missed; the next `recv`
    /// continues with the oldest push still buffered.
    #[error("missed {0} pushes by falling behind")]
    Lagged(u64),
    /// The client is closed; no more pushes will come.
    #[error("the client is closed")]
    Closed,
}

impl Subscription {
    /// The next push.
    ///
    /// # Errors
    /// [`SubscriptionError::Lagged`] when pushes were missed (it says how many; nothing is lost
    /// silently), [`SubscriptionError::Closed`] when the client is gone.
    pub async fn recv(&mut self) -> Result<Push, SubscriptionError> {
        loop {
            match self.queue.next().await {
                Next::Missed(missed) => return Err(SubscriptionError::Lagged(missed)),
                Next::Closed => return Err(SubscriptionError::Closed),
                // The connection task only checked it routes as a push; it is decoded here, by
                // the subscriber that takes it. One that does not decode is skipped.
                Next::Line(line) => match decode_line::<ServerMessage>(&line) {
                    Some(Ok(message)) => {
                        return Ok(Push {
                            uri: message.uri,
                            data: message.data,
                        })
                    }
                    Some(Err(err)) => tracing::warn!(error = %err, "undecodable push"),
                    None => {}
                },
            }
        }
    }
}

/// Tells the connection task to forget a call whose caller stopped waiting, when dropped armed.
/// Holds the id's number, not its text: the text is only built for an abandoned call.
struct ForgetIfAbandoned<'a> {
    notes: &'a Notes,
    number: u64,
    armed: bool,
}

impl Drop for ForgetIfAbandoned<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.notes.push(Note::Forget(request_id(self.number)));
        }
    }
}

/// The id of request number `number`: `rq` and the number in decimal. Written by hand, as
/// `format!` costs several hundred instructions per call here.
fn request_id(number: u64) -> String {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = number;
    loop {
        start -= 1;
        // `rest % 10` is below 10, so the cast cannot truncate.
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut id = String::with_capacity(2 + digits.len() - start);
    id.push_str("rq");
    for &digit in &digits[start..] {
        id.push(char::from(digit));
    }
    id
}

/// A reply line decoded as `T`, with the errors the connection task used to report.
fn decode_reply<T: DeserializeOwned>(line: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(line).map_err(|err| {
        Error::Protocol(pixl_ipc_protocol::FrameError::from_serde(&err, None).to_string())
    })
}

/// A reply line as [`Client::send`] reads it: [`ServerMessage`]'s fields with the same types,
/// so the same lines decode or fail, but the id (matched already by the connection task) is
/// checked without being built.
#[derive(Deserialize)]
struct ReplyLine {
    #[serde(rename = "ipcReqID", default)]
    _id: Option<IgnoredAny>,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(rename = "uri", default)]
    _uri: Option<String>,
}

/// A reply line for [`Client::send`]: its `data`, or a top-level `code` as an error.
fn decode_value(line: &[u8]) -> Result<Value, Error> {
    let reply = decode_reply::<ReplyLine>(line)?;
    match reply.code {
        Some(code) if is_set(&code) => Err(Error::Server {
            code: text_of(&code),
            message: reply.message.as_ref().map(text_of).unwrap_or_default(),
            data: None,
        }),
        _ => Ok(reply.data),
    }
}

/// A reply's top level with `data` kept as text, for typed decoding.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
}

/// The members of `data` the `codeToErr` rule looks at; the rest is skipped, not built.
#[derive(Deserialize)]
struct DataCode {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
}

/// A reply line for [`Client::call`]: `data` decoded straight into `T`, no [`Value`] tree.
fn decode_typed<T: DeserializeOwned>(line: &[u8]) -> Result<T, Error> {
    let reply = decode_reply::<Envelope>(line)?;
    if let Some(code) = reply.code.filter(is_set) {
        return Err(Error::Server {
            code: text_of(&code),
            message: reply.message.as_ref().map(text_of).unwrap_or_default(),
            data: None,
        });
    }
    let data = reply.data.as_deref().map_or("null", RawValue::get);
    check_data_code(data)?;
    serde_json::from_str(data).map_err(|err| Error::Decode(err.into()))
}

/// The `codeToErr` rule for a reply's `data` (as JSON text): an object with a `code` set is an
/// [`Error::Server`].
pub(crate) fn check_data_code(data: &str) -> Result<(), Error> {
    if data.starts_with('{') {
        if let Ok(DataCode {
            code: Some(code),
            message,
        }) = serde_json::from_str::<DataCode>(data)
        {
            if is_set(&code) {
                return Err(Error::Server {
                    code: text_of(&code),
                    message: message.as_ref().map(text_of).unwrap_or_default(),
                    data: serde_json::from_str(data).ok(),
                });
            }
        }
    }
    Ok(())
}

/// The original's truthiness for `code`: absent, `null`, `false`, `0` and `""` mean no error.
pub(crate) fn is_set(code: &Value) -> bool {
    match code {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64() != Some(0.0),
        Value::String(text) => !text.is_empty(),
        _ => true,
    }
}

pub(crate) fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_reply, decode_value, request_id, Error};
    use pixl_ipc_protocol::ServerMessage;

    /// `send` decodes with its own lean struct: it must accept and refuse the same lines as
    /// [`ServerMessage`], and give the same `data` or error code.
    #[test]
    fn send_decodes_replies_as_server_message_does() {
        let lines: [&[u8]; 12] = [
            br#"{"ipcReqID":"rq1","data":{"a":[1,2,{"b":null}]}}"#,
            br#"{"ipcReqID":"rq1"}"#,
            br#"{"ipcReqID":{"odd":1},"data":3}"#,
            br#"{"ipcReqID":"rq1","code":"no_uri","message":"no uri"}"#,
            br#"{"ipcReqID":"rq1","code":0,"data":"zero is no error"}"#,
            br#"{"ipcReqID":"rq1","uri":"/topic","data":1}"#,
            br#"{"ipcReqID":"rq1","uri":5,"data":1}"#,
            br#"{"ipcReqID":"rq1","ipcReqID":"rq2","data":1}"#,
            br#"{"ipcReqID":"rq1","data":1,"data":2}"#,
            br#"{"ipcReqID":"rq1","data":1,"extra":[true]}"#,
            br#"{"ipcReqID":"rq1","data":"#,
            br#"[1,2]"#,
        ];
        for line in lines {
            let lean = decode_value(line);
            let full = decode_reply::<ServerMessage>(line);
            let text = String::from_utf8_lossy(line);
            match (lean, full) {
                (Ok(data), Ok(message)) => assert_eq!(data, message.data, "{text}"),
                (Err(Error::Server { code, .. }), Ok(message)) => {
                    assert_eq!(Some(serde_json::json!(code)), message.code, "{text}");
                }
                (Err(Error::Protocol(lean)), Err(Error::Protocol(full))) => {
                    assert_eq!(lean, full, "{text}");
                }
                (lean, full) => panic!("{text}: send gave {lean:?}, ServerMessage {full:?}"),
            }
        }
    }

    /// A server on a temp socket (kept while the directory lives) and a client connected to it.
    async fn server_and_client() -> (
        tempfile::TempDir,
        pixl_ipc_server::RunningServer,
        super::Client,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.sock");
        let server = pixl_ipc_server::Server::new(pixl_ipc_server::ServerConfig::new(&path))
            .start()
            .await
            .unwrap();
        let client = super::Client::connect(&path).await.unwrap();
        (dir, server, client)
    }

    /// A call that times out leaves a note for the task to forget it (no periodic sweep); one
    /// that is answered leaves none. On a current-thread runtime the task cannot take the note
    /// before the test looks.
    #[tokio::test]
    async fn an_abandoned_call_is_left_for_the_task_to_forget() {
        use crate::notes::Note;
        use std::time::Duration;

        let (_dir, _server, client) = server_and_client().await;
        let answered = client
            .send("/ipcserver/test/echo", serde_json::json!({"a": 1}))
            .await
            .unwrap();
        assert_eq!(answered, serde_json::json!({"a": 1}));
        assert!(
            client.shared.notes.try_take().is_empty(),
            "nothing to forget"
        );

        let late = client
            .send_with_timeout(
                "/ipcserver/test/delay",
                serde_json::json!({"delay": 2000}),
                Duration::from_millis(50),
            )
            .await;
        assert!(matches!(late, Err(Error::Timeout { .. })), "{late:?}");
        assert_eq!(client.shared.notes.try_take(), [Note::Forget("rq1".into())]);
        client.close().await;
    }

    /// While the task reconnects it takes no notes, so a caller that gives up on calls in a
    /// loop must not leave one per call: only calls the task was handed (at most the queue's
    /// depth) can be in a table. One still waiting for queue space is in none.
    #[tokio::test]
    async fn calls_given_up_before_the_task_took_them_leave_no_note() {
        use futures_util::FutureExt;

        let (_dir, server, client) = server_and_client().await;
        server.shutdown().await;
        client
            .state_changes()
            .wait_for(|state| matches!(state, crate::ConnectionState::Reconnecting { .. }))
            .await
            .unwrap();
        for _ in 0..3 * super::QUEUE_DEPTH {
            // Polled once, then dropped: a caller that gave up (a zero timeout, a `select!`).
            let call = client.send("/ipcserver/test/echo", serde_json::json!(1));
            assert!(call.now_or_never().is_none(), "no reply while reconnecting");
        }
        let left = client.shared.notes.try_take().len();
        assert!(
            left <= super::QUEUE_DEPTH,
            "{left} notes for {} abandoned calls while reconnecting",
            3 * super::QUEUE_DEPTH
        );
        client.close().await;
    }

    #[test]
    fn request_ids_are_rq_and_the_number() {
        for number in [0, 7, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(request_id(number), format!("rq{number}"));
        }
    }
}
