#![doc = include_str!("../README.md")]

mod codec;
mod error;
mod message;
mod sniff;

pub use codec::{encode_line, JsonLinesCodec, DEFAULT_MAX_MESSAGE_BYTES};
pub use error::FrameError;
pub use message::{
    ErrorCode, ErrorData, ErrorReply, Push, Request, Response, ServerMessage, REQ_ID_FIELD,
};
