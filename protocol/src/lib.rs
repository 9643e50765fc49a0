#![doc = include_str!("../README.md")]

mod codec;
pub mod cost;
mod error;
pub mod json;
mod message;
pub mod quote;
pub mod sniff;

pub use codec::{
    decode_line, encode_line, frame_lines, JsonLinesCodec, LineSplitter, DEFAULT_MAX_MESSAGE_BYTES,
};
pub use error::FrameError;
pub use message::{
    ErrorCode, ErrorData, ErrorReply, Push, RawId, RawRequest, RawResponse, Request, Response,
    ServerMessage, MAX_ERROR_REPLY_ID_BYTES, REQ_ID_FIELD,
};
