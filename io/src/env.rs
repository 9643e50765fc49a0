//! What the binaries take from their environment when given no flag: the socket path and the
//! WebSocket bearer token.

use std::path::{Path, PathBuf};

/// The socket path used when none is given: `$XDG_RUNTIME_DIR/pixl-ipc.sock` when that
/// directory exists, else `/tmp/pixl-ipc.sock`. The server and the CLI share it, so both work
/// with no flags.
pub fn default_socket_path() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|dir| !dir.is_empty() && Path::new(dir).is_dir())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("pixl-ipc.sock")
}

/// The environment variable both binaries read the WebSocket bearer token from.
pub const TOKEN_ENV: &str = "PIXL_IPC_WS_TOKEN";

/// The WebSocket bearer token as the binaries take it: from `file` when given, else from
/// [`TOKEN_ENV`], trimmed either way; `None` when neither holds a non-empty token. Never from a command-line
/// value, which any local user could read in `ps`.
///
/// # Errors
/// The file cannot be read.
pub fn read_token(file: Option<&Path>) -> std::io::Result<Option<String>> {
    let token = match file {
        Some(path) => Some(std::fs::read_to_string(path)?.trim().to_owned()),
        None => std::env::var(TOKEN_ENV)
            .ok()
            .map(|token| token.trim().to_owned()),
    };
    Ok(token.filter(|token| !token.is_empty()))
}
