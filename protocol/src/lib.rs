#![doc = include_str!("../README.md")]

mod codec;
pub mod cost;
mod error;
pub mod json;
mod message;
pub mod quote;
pub mod sink_queue;
pub mod sniff;
pub mod unix_io;

pub use codec::{
    decode_line, encode_line, frame_lines, JsonLinesCodec, LineSplitter, DEFAULT_MAX_MESSAGE_BYTES,
};
pub use error::FrameError;
pub use message::{
    ErrorCode, ErrorData, ErrorReply, Push, RawId, RawRequest, RawResponse, Request, Response,
    ServerMessage, MAX_ERROR_REPLY_ID_BYTES, REQ_ID_FIELD,
};

/// The socket path used when none is given: `$XDG_RUNTIME_DIR/pixl-ipc.sock` when that
/// directory exists, else `/tmp/pixl-ipc.sock`. The server and the CLI share it, so both work
/// with no flags.
pub fn default_socket_path() -> std::path::PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|dir| !dir.is_empty() && std::path::Path::new(dir).is_dir())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/tmp"))
        .join("pixl-ipc.sock")
}

/// The environment variable both binaries read the WebSocket bearer token from.
pub const TOKEN_ENV: &str = "PIXL_IPC_WS_TOKEN";

/// The WebSocket bearer token as the binaries take it: from `file` (trimmed) when given, else
/// from [`TOKEN_ENV`]; `None` when neither holds a non-empty token. Never from a command-line
/// value, which any local user could read in `ps`.
///
/// # Errors
/// The file cannot be read.
pub fn read_token(file: Option<&std::path::Path>) -> std::io::Result<Option<String>> {
    let token = match file {
        Some(path) => Some(std::fs::read_to_string(path)?.trim().to_owned()),
        None => std::env::var(TOKEN_ENV).ok(),
    };
    Ok(token.filter(|token| !token.is_empty()))
}
