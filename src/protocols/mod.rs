//! Protocols built on the public API: framing, policies and ready services.

pub mod basic;
pub mod chat;
pub mod file_sender;
pub mod policies;
pub mod portforward;
pub mod wire;
