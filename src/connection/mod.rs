//! The connection layer: configuration (the option table, URL and environment) and the client.

pub mod client;
pub mod config;
pub mod options;
