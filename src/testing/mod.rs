//! Test helpers for protocol logic without sockets (Twisted's `twisted.internet.testing`).

mod string_transport;

pub use string_transport::{ProducerState, StringTransport};
