//! The messages of the pixl-ipc protocol, with their exact wire field names.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// The wire name of the request id field, shared by requests and replies.
pub const REQ_ID_FIELD: &str = "ipcReqID";

/// The longest id, as JSON text, that an error reply for a line that failed copies back: a
/// longer one is left out (`"ipcReqID": null`), so a peer cannot make a small error reply carry
/// a large id. Requests that decode keep their id whatever its size.
pub const MAX_ERROR_REPLY_ID_BYTES: usize = 1024;

/// A request id exactly as the client wrote it: its JSON text, kept from the request to the
/// reply byte for byte.
///
/// Ids are opaque to the server. Going through a [`Value`] would change some of them: an integer
/// past 2^53 would come back as a float, `1e400` as `null`, `"\u00e9"` as `"é"`. Whitespace
/// inside an object or array id is kept as sent (it is valid JSON; no newline can be in it,
/// since a message is one line).
#[derive(Clone)]
pub struct RawId(Box<RawValue>);

impl RawId {
    /// The id's JSON text, as the client sent it.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The id as a JSON value, as handlers see it. Lossy where serde_json is: a number too large
    /// for `f64` becomes `null`.
    pub fn to_value(&self) -> Value {
        // Already checked to be JSON, so the only failure is a number serde_json cannot hold
        // (which its own `Value` deserializer turns into `null` anyway).
        serde_json::from_str(self.json()).unwrap_or(Value::Null)
    }

    /// The id with `value`'s compact JSON text.
    pub fn from_value(value: &Value) -> RawId {
        let text = crate::json::to_json_string(value);
        // Compact JSON of a `Value` is always valid JSON; RawValue only checks that.
        match RawValue::from_string(text) {
            Ok(raw) => RawId(raw),
            Err(_) => RawId(RawValue::NULL.to_owned()),
        }
    }

    /// `text` if it is exactly one JSON value (surrounding whitespace is dropped).
    pub fn parse(text: &[u8]) -> Option<RawId> {
        serde_json::from_slice::<Box<RawValue>>(text)
            .ok()
            .map(RawId)
    }

    /// The id for an error reply about a line that failed: `None` when its text is longer than
    /// [`MAX_ERROR_REPLY_ID_BYTES`].
    pub fn for_error_reply(self) -> Option<RawId> {
        (self.json().len() <= MAX_ERROR_REPLY_ID_BYTES).then_some(self)
    }
}

impl PartialEq for RawId {
    /// Equal when the text is byte for byte the same (`1.0` and `1` are different ids).
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl Eq for RawId {}

impl std::fmt::Debug for RawId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawId({})", self.json())
    }
}

impl From<&Value> for RawId {
    fn from(value: &Value) -> Self {
        RawId::from_value(value)
    }
}

impl Serialize for RawId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(RawId)
    }
}

/// A request from a client to the server.
///
/// `{"ipcReqID":"rq0","uri":"/myapi/test","data":{..},"pid":1234,"userAgent":"Node/IPCClient/app"}`
///
/// Only `uri` is required for the request to be routed; everything else is optional on the wire.
/// The informational fields (`pid`, `userAgent`) are read leniently: a value of the wrong type is
/// treated as absent rather than failing the request, because nothing depends on them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The client's id for this request (`"rq"` + a counter in the original clients), copied
    /// into the reply. A request without one still gets a reply, with `"ipcReqID": null`.
    #[serde(
        rename = "ipcReqID",
        default,
        deserialize_with = "non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipc_req_id: Option<Value>,
    /// The route to call. Missing, `null` or `""` gets the `no_uri` error reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The payload for the handler; `null` when absent.
    #[serde(default)]
    pub data: Value,
    /// The sender's process id as the client claims it (not verified; see the connection's peer
    /// credentials for the kernel's answer).
    #[serde(
        default,
        deserialize_with = "lenient_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub pid: Option<u32>,
    /// Free text identifying the calling program.
    #[serde(
        rename = "userAgent",
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_agent: Option<String>,
    /// Extension: when `true` the server runs the handler but sends no reply (one-way message).
    #[serde(rename = "ipcNoReply", default, skip_serializing_if = "is_false")]
    pub no_reply: bool,
    /// Extension: when `true` the server closes the connection after replying to this request
    /// (and after finishing any other request already in flight on it).
    #[serde(rename = "ipcClose", default, skip_serializing_if = "is_false")]
    pub close_after_reply: bool,
    /// Extension: `true` asks a streaming route for its replies as a stream (item lines with
    /// `"ipcMore": true`, then one final line). Ignored by routes that do not stream.
    #[serde(rename = "ipcStream", default, skip_serializing_if = "is_false")]
    pub stream: bool,
}

impl Request {
    /// A request for `uri` carrying `data`, with no id and no client details.
    pub fn new(uri: impl Into<String>, data: Value) -> Self {
        Request {
            uri: Some(uri.into()),
            data,
            ..Request::default()
        }
    }

    /// The uri if it is present and not empty; `None` means the request gets `no_uri`.
    pub fn routable_uri(&self) -> Option<&str> {
        self.uri.as_deref().filter(|uri| !uri.is_empty())
    }
}

/// A request as the server receives it: the same fields as [`Request`], but `data` kept as the
/// JSON text the client sent (checked to be valid JSON, not yet turned into a tree).
///
/// Handlers get a [`Request`] ([`RawRequest::into_request`]); a reply that returns the data
/// unchanged (the built-in echo) can be written from this text without ever building a
/// [`Value`], which is most of the cost of a large message.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawRequest {
    /// As [`Request::ipc_req_id`], but as the JSON text the client sent, so the reply carries
    /// it back byte for byte (`None` when absent or `null`).
    #[serde(rename = "ipcReqID", default)]
    pub ipc_req_id: Option<RawId>,
    /// As [`Request::uri`].
    #[serde(default)]
    pub uri: Option<String>,
    /// The payload's JSON text; `None` when absent or `null`.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    /// As [`Request::pid`].
    #[serde(default, deserialize_with = "lenient_u32")]
    pub pid: Option<u32>,
    /// As [`Request::user_agent`].
    #[serde(rename = "userAgent", default, deserialize_with = "lenient_string")]
    pub user_agent: Option<String>,
    /// As [`Request::no_reply`].
    #[serde(rename = "ipcNoReply", default)]
    pub no_reply: bool,
    /// As [`Request::close_after_reply`].
    #[serde(rename = "ipcClose", default)]
    pub close_after_reply: bool,
    /// As [`Request::stream`].
    #[serde(rename = "ipcStream", default)]
    pub stream: bool,
    /// Extension: `true` makes this line a cancel of the stream whose id is `ipcReqID`, not a
    /// request: the stream ends with the top-level error `cancelled`. A cancel for an id with no
    /// running stream is ignored (no reply).
    #[serde(rename = "ipcCancel", default)]
    pub cancel: bool,
}

impl RawRequest {
    /// The uri if it is present and not empty; `None` means the request gets `no_uri`.
    pub fn routable_uri(&self) -> Option<&str> {
        self.uri.as_deref().filter(|uri| !uri.is_empty())
    }

    /// The request with its `data` parsed.
    ///
    /// # Errors
    /// Only for data nested deeper than serde_json's recursion limit (128 levels), which the
    /// syntax check that produced this request does not count.
    pub fn into_request(self) -> Result<Request, serde_json::Error> {
        let data = match &self.data {
            Some(raw) => serde_json::from_str(raw.get())?,
            None => Value::Null,
        };
        Ok(Request {
            // `1e400` is `null` to serde_json, so it is no id to a handler, as before.
            ipc_req_id: self
                .ipc_req_id
                .map(|id| id.to_value())
                .filter(|id| !id.is_null()),
            uri: self.uri,
            data,
            pid: self.pid,
            user_agent: self.user_agent,
            no_reply: self.no_reply,
            close_after_reply: self.close_after_reply,
            stream: self.stream,
        })
    }
}

/// A reply whose `data` is JSON text written out as it is: `{"ipcReqID":..,"data":<text>}`.
#[derive(Debug, Clone, Serialize)]
pub struct RawResponse<'a> {
    /// The request's id as the client wrote it; `None` is written as `null`.
    #[serde(rename = "ipcReqID")]
    pub ipc_req_id: Option<&'a RawId>,
    /// The payload's JSON text, or `null` for none.
    pub data: Option<&'a RawValue>,
}

/// A successful reply: `{"ipcReqID":"rq0","data":<handler result>}`.
///
/// Handler-level failures are also sent in this shape, with `data: {"code":..,"message":..}`,
/// exactly like the original's `no_handler_found`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response<'a> {
    /// The request's id as the client wrote it; `None` is written as `null`.
    #[serde(rename = "ipcReqID")]
    pub ipc_req_id: Option<&'a RawId>,
    /// What the handler returned.
    pub data: &'a Value,
}

/// A request-level error reply, with `code` and `message` at the top level:
/// `{"ipcReqID":null,"code":"invalid_json","message":"..."}`.
///
/// This is the shape of the original's `no_uri` reply; this server also uses it for every error
/// that happens before a handler runs (see [`ErrorCode`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The request's id as the client wrote it, when it could be recovered (and, for a line
    /// that failed, is at most [`MAX_ERROR_REPLY_ID_BYTES`] long); `None` is written as `null`.
    #[serde(rename = "ipcReqID", default)]
    pub ipc_req_id: Option<RawId>,
    /// A stable machine-readable code.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl ErrorReply {
    /// Builds an error reply for one of the protocol's own error codes.
    pub fn new(ipc_req_id: Option<RawId>, code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            ipc_req_id,
            code: code.as_str().to_owned(),
            message: message.into(),
        }
    }
}

/// The `data` of a handler-level error reply: `{"code":"...","message":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorData {
    /// A stable machine-readable code (the handler's own, or one of [`ErrorCode`]).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

/// A message the server sends on its own initiative: it has no `ipcReqID`, so the original Node
/// client emits it as a `data` event and the PHP client skips it.
/// `{"uri":"/events/config","data":{..}}` (`uri` is optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Push {
    /// An optional topic, so a client can tell pushes apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The payload.
    #[serde(default)]
    pub data: Value,
}

/// Any line a server may send, as a client decodes it: a reply (with `ipcReqID`), a top-level
/// error, or a push (no `ipcReqID`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerMessage {
    /// The request id this answers; `None` (absent or `null`) for pushes and unattributable errors.
    #[serde(rename = "ipcReqID", default, deserialize_with = "non_null")]
    pub ipc_req_id: Option<Value>,
    /// The handler's result, or the push payload.
    #[serde(default)]
    pub data: Value,
    /// Set on a top-level error reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Value>,
    /// Set on a top-level error reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Value>,
    /// Set on pushes that carry a topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// Every error code this server sends, with the shape it is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Top level. The request has no `uri` (or it is `null` or `""`). From the original.
    NoUri,
    /// In `data`. No handler matched the uri and the default handler was not replaced. From the
    /// original.
    NoHandlerFound,
    /// Top level, `ipcReqID` recovered when possible. A line starting with `{` is not valid JSON.
    InvalidJson,
    /// Top level, `ipcReqID` recovered when possible. Valid JSON that is not a request: not an
    /// object, or a field of the wrong type (`uri` not a string).
    InvalidRequest,
    /// Top level, `ipcReqID` recovered when possible. The line is longer than the server's
    /// maximum message size; it was discarded up to its newline.
    MessageTooLarge,
    /// Top level, then the connection is closed. The server is at its connection limit.
    TooManyConnections,
    /// In `data`. The handler failed without choosing a code of its own.
    HandlerError,
    /// In `data`. The request's `data` does not decode into the type a typed handler takes
    /// (wrong type, missing field); the handler did not run. The message gives the field path
    /// (`.` for `data` itself) and serde's reason, each cut to a bounded size.
    InvalidData,
    /// In `data`. The handler panicked; the connection and the server carry on.
    HandlerPanic,
    /// In `data`. The handler did not finish within the server's handler timeout; it was
    /// cancelled.
    HandlerTimeout,
    /// Top level, `ipcReqID: null`, then the connection is closed. The peer's uid and gid are
    /// not on the server's allow-list.
    PeerNotAllowed,
    /// Top level, then the connection is closed. A line stayed incomplete (no newline) for longer
    /// than the server's partial-message timeout.
    PartialMessageTimeout,
    /// In `data`. A forwarded request (`--forward`) found no connection to its upstream server
    /// (not started, down, reconnecting), or the connection was lost while the request was in
    /// flight; the message says why. The request is not re-sent.
    UpstreamUnavailable,
    /// In `data`. A forwarded request got no reply from its upstream server within the
    /// forward's timeout (`--forward-timeout-ms`).
    UpstreamTimeout,
    /// In `data`. The route answers with a stream of replies and the request did not ask for
    /// one (`"ipcStream": true`); nothing else is sent for it.
    StreamRequired,
    /// Top level: the final line of a stream the client cancelled (`"ipcCancel": true`).
    Cancelled,
    /// Top level: the final line of a stream the server ended because it is shutting down.
    ShuttingDown,
    /// In `data`. A load-shedding middleware (`tower::load_shed` around the server's handlers)
    /// refused the request because the handlers were at capacity; the handler did not run.
    Overloaded,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoUri => "no_uri",
            ErrorCode::NoHandlerFound => "no_handler_found",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::HandlerError => "handler_error",
            ErrorCode::InvalidData => "invalid_data",
            ErrorCode::HandlerPanic => "handler_panic",
            ErrorCode::HandlerTimeout => "handler_timeout",
            ErrorCode::PeerNotAllowed => "peer_not_allowed",
            ErrorCode::PartialMessageTimeout => "partial_message_timeout",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::StreamRequired => "stream_required",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Overloaded => "overloaded",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// `null` and absent both mean "no id".
fn non_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok((!value.is_null()).then_some(value))
}

// The lenient fields keep what they can use and skip anything else without building it: a
// peer's 15 MiB array in `pid` must cost a scan, not a `Value` tree of 35x its size.

/// `pid`: an integer that fits a `u32`, else `None`.
fn lenient_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    deserializer.deserialize_any(Lenient(|value: Scalar<'_>| match value {
        Scalar::Unsigned(number) => u32::try_from(number).ok(),
        Scalar::Signed(number) => u32::try_from(number).ok(),
        _ => None,
    }))
}

/// `userAgent`: a string, else `None`.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_any(Lenient(|value: Scalar<'_>| match value {
        Scalar::Text(text) => Some(text.to_owned()),
        _ => None,
    }))
}

/// A JSON scalar as a lenient field sees it; arrays and objects are skipped unseen.
enum Scalar<'a> {
    Unsigned(u64),
    Signed(i64),
    Text(&'a str),
    Other,
}

/// Turns a scalar into the field's value with its function; skips containers.
struct Lenient<F>(F);

impl<'de, T, F: FnOnce(Scalar<'_>) -> Option<T>> serde::de::Visitor<'de> for Lenient<F> {
    type Value = Option<T>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_u64<E>(self, number: u64) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Unsigned(number)))
    }

    fn visit_i64<E>(self, number: i64) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Signed(number)))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Other))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Other))
    }

    fn visit_str<E>(self, text: &str) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Text(text)))
    }

    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(None)
    }
}
