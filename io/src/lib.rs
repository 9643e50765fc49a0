#![doc = include_str!("../README.md")]

mod env;
pub mod sink_queue;
pub mod unix;

pub use env::{default_socket_path, read_token, TOKEN_ENV};
