//! Test helpers for protocol logic without sockets (Twisted's `twisted.internet.testing`).

mod clock;
mod string_transport;

pub use clock::{Clock, ClockCall};
pub use string_transport::{ProducerState, StringTransport};
