//! Why a line could not be decoded. None of these end the connection.

use serde_json::error::Category;

use crate::message::{ErrorCode, RawId};

/// A line that was received but could not be turned into a message. The codec has already
/// skipped past it, so the next line decodes normally.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    /// The line is longer than the configured maximum. It is discarded up to its newline.
    #[error("message exceeds the maximum of {limit} bytes")]
    TooLong {
        /// The configured maximum line length in bytes.
        limit: usize,
        /// The `ipcReqID` found at the start of the line, if any.
        req_id: Option<RawId>,
    },
    /// The line starts with `{` but is not valid JSON.
    #[error("invalid JSON: {reason}")]
    InvalidJson {
        /// The parser's explanation, with line and column, any input it quotes cut short
        /// ([`quote::serde_error`](crate::quote::serde_error)).
        reason: String,
        /// The `ipcReqID` found at the start of the line, if any.
        req_id: Option<RawId>,
    },
    /// A line was started and then nothing more arrived for too long; the connection is closed
    /// after this is reported.
    #[error("incomplete message: no newline for {waited_ms} ms")]
    Stalled {
        /// How long the line stayed incomplete.
        waited_ms: u64,
    },
    /// The line is valid JSON but not a message of the expected shape (a field of the wrong
    /// type, for example).
    #[error("invalid message: {reason}")]
    InvalidMessage {
        /// The parser's explanation, any input it quotes cut short
        /// ([`quote::serde_error`](crate::quote::serde_error)).
        reason: String,
        /// The message's `ipcReqID`, if it had one.
        req_id: Option<RawId>,
    },
}

impl FrameError {
    /// A line that stayed incomplete for `waited_ms` (reported by the transport, not the codec).
    pub fn stalled(waited_ms: u64) -> FrameError {
        FrameError::Stalled { waited_ms }
    }

    /// The error for a line serde_json failed on: [`FrameError::InvalidMessage`] when the line
    /// is JSON of the wrong shape, else [`FrameError::InvalidJson`]. The reason quotes at most a
    /// bounded part of the peer's input, and an id longer than
    /// [`MAX_ERROR_REPLY_ID_BYTES`](crate::MAX_ERROR_REPLY_ID_BYTES) is dropped, so the error
    /// reply stays small whatever the line held.
    pub fn from_serde(err: &serde_json::Error, req_id: Option<RawId>) -> FrameError {
        let reason = crate::quote::serde_error(err);
        let req_id = req_id.and_then(RawId::for_error_reply);
        match err.classify() {
            Category::Data => FrameError::InvalidMessage { reason, req_id },
            Category::Syntax | Category::Eof | Category::Io => {
                FrameError::InvalidJson { reason, req_id }
            }
        }
    }

    /// The wire error code that reports this failure to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLong { .. } => ErrorCode::MessageTooLarge,
            FrameError::InvalidJson { .. } => ErrorCode::InvalidJson,
            FrameError::InvalidMessage { .. } => ErrorCode::InvalidRequest,
            FrameError::Stalled { .. } => ErrorCode::PartialMessageTimeout,
        }
    }

    /// The request id recovered from the failed line, as the peer wrote it, if any.
    pub fn req_id(&self) -> Option<&RawId> {
        match self {
            FrameError::TooLong { req_id, .. }
            | FrameError::InvalidJson { req_id, .. }
            | FrameError::InvalidMessage { req_id, .. } => req_id.as_ref(),
            FrameError::Stalled { .. } => None,
        }
    }
}
