//! Transports: how connections reach the connection core.

pub(crate) mod unix;
