//! [`StringTransport`]: a transport that records what a protocol does to it.

use std::io;

use crate::producer::{Producer, RegisterProducerError, WaterMarks};
use crate::{Address, Transport};

/// Whether the transport is reading (Twisted's `producerState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProducerState {
    /// Reading.
    Producing,
    /// `pause_producing` was called.
    Paused,
    /// `stop_producing` was called.
    Stopped,
}

/// An in-memory [`Transport`] that records writes and state changes, for unit tests of
/// protocols (Twisted's `proto_helpers.StringTransport`). Use it with [`Cx::new`](crate::Cx::new).
///
/// The default peer is `192.168.1.1:54321` and the default host `10.0.0.1:12345`, as in
/// Twisted. What was written counts as buffered until [`StringTransport::clear`] or
/// [`StringTransport::take`], so the write-buffer water marks can be tested with it
/// ([`StringTransport::writing_paused`]).
///
/// ```
/// use torsion::Transport;
/// use torsion::testing::StringTransport;
///
/// let mut t = StringTransport::new();
/// t.write(b"abc");
/// t.lose_connection();
/// assert_eq!(t.value(), b"abc");
/// assert!(t.disconnecting());
/// ```
pub struct StringTransport {
    io: Vec<u8>,
    disconnecting: bool,
    disconnected: bool,
    write_closed: bool,
    producer_state: ProducerState,
    peer: Address,
    host: Address,
    nodelay: bool,
    keepalive: bool,
    producer: Option<Box<dyn Producer>>,
    streaming: bool,
    marks: WaterMarks,
}

impl std::fmt::Debug for StringTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StringTransport")
            .field("value", &String::from_utf8_lossy(&self.io))
            .field("disconnecting", &self.disconnecting)
            .field("disconnected", &self.disconnected)
            .field("producer_state", &self.producer_state)
            .field("has_producer", &self.producer.is_some())
            .finish()
    }
}

impl Default for StringTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl StringTransport {
    /// A connected transport with Twisted's default addresses.
    pub fn new() -> Self {
        Self::with_addresses(
            Address::Tcp("10.0.0.1:12345".parse().expect("literal")),
            Address::Tcp("192.168.1.1:54321".parse().expect("literal")),
        )
    }

    /// A connected transport with the given host (local) and peer addresses.
    pub fn with_addresses(host: Address, peer: Address) -> Self {
        StringTransport {
            io: Vec::new(),
            disconnecting: false,
            disconnected: false,
            write_closed: false,
            producer_state: ProducerState::Producing,
            peer,
            host,
            nodelay: false,
            keepalive: false,
            producer: None,
            streaming: false,
            marks: WaterMarks::default(),
        }
    }

    /// Everything written so far (and not cleared).
    pub fn value(&self) -> &[u8] {
        &self.io
    }

    /// Forgets what was written.
    pub fn clear(&mut self) {
        self.io.clear();
        let _ = self.marks.update(0);
    }

    /// Takes what was written, leaving the record empty.
    pub fn take(&mut self) -> Vec<u8> {
        let _ = self.marks.update(0);
        std::mem::take(&mut self.io)
    }

    /// True while more than the high water mark is recorded (and not yet cleared): a
    /// streaming producer would be paused now.
    pub fn writing_paused(&self) -> bool {
        self.marks.is_paused()
    }

    /// The registered producer, to drive it by hand.
    pub fn producer_mut(&mut self) -> Option<&mut (dyn Producer + 'static)> {
        self.producer.as_deref_mut()
    }

    /// True if the registered producer is streaming (push).
    pub fn streaming(&self) -> bool {
        self.streaming
    }

    /// True once `lose_connection` or `abort_connection` was called.
    pub fn disconnecting(&self) -> bool {
        self.disconnecting
    }

    /// True once `abort_connection` was called.
    pub fn disconnected(&self) -> bool {
        self.disconnected
    }

    /// True once `lose_write_connection` was called.
    pub fn write_closed(&self) -> bool {
        self.write_closed
    }

    /// Whether reading is paused or stopped.
    pub fn producer_state(&self) -> ProducerState {
        self.producer_state
    }
}

impl Transport for StringTransport {
    fn write(&mut self, data: &[u8]) {
        if !self.disconnected && !self.write_closed {
            self.io.extend_from_slice(data);
            let _ = self.marks.update(self.io.len());
        }
    }

    fn lose_connection(&mut self) {
        self.disconnecting = true;
    }

    fn abort_connection(&mut self) {
        self.disconnecting = true;
        self.disconnected = true;
    }

    fn lose_write_connection(&mut self) {
        self.write_closed = true;
    }

    fn pause_producing(&mut self) {
        if self.producer_state == ProducerState::Producing {
            self.producer_state = ProducerState::Paused;
        }
    }

    fn resume_producing(&mut self) {
        if self.producer_state == ProducerState::Paused {
            self.producer_state = ProducerState::Producing;
        }
    }

    fn stop_producing(&mut self) {
        self.producer_state = ProducerState::Stopped;
        self.disconnecting = true;
    }

    fn register_producer(
        &mut self,
        producer: Box<dyn Producer>,
        streaming: bool,
    ) -> Result<(), RegisterProducerError> {
        if self.disconnected {
            return Err(RegisterProducerError::Disconnected(producer));
        }
        if self.producer.is_some() {
            return Err(RegisterProducerError::AlreadyRegistered(producer));
        }
        self.producer = Some(producer);
        self.streaming = streaming;
        Ok(())
    }

    fn unregister_producer(&mut self) {
        self.producer = None;
    }

    fn set_write_buffer_limits(&mut self, high: usize, low: usize) {
        self.marks = WaterMarks::new(high, low);
        let _ = self.marks.update(self.io.len());
    }

    fn write_buffer_limits(&self) -> (usize, usize) {
        self.marks.limits()
    }

    fn peer(&self) -> Address {
        self.peer.clone()
    }

    fn host(&self) -> Address {
        self.host.clone()
    }

    fn buffered_len(&self) -> usize {
        self.io.len()
    }

    fn is_disconnecting(&self) -> bool {
        self.disconnecting
    }

    fn is_connected(&self) -> bool {
        !self.disconnecting && !self.disconnected
    }

    fn set_tcp_nodelay(&mut self, enabled: bool) -> io::Result<()> {
        self.nodelay = enabled;
        Ok(())
    }

    fn tcp_nodelay(&self) -> io::Result<bool> {
        Ok(self.nodelay)
    }

    fn set_tcp_keepalive(&mut self, enabled: bool) -> io::Result<()> {
        self.keepalive = enabled;
        Ok(())
    }

    fn tcp_keepalive(&self) -> io::Result<bool> {
        Ok(self.keepalive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_writes_until_aborted() {
        let mut t = StringTransport::new();
        t.write(b"a");
        t.write_vectored(&[b"b", b"c"]);
        assert_eq!(t.value(), b"abc");
        t.abort_connection();
        t.write(b"d");
        assert_eq!(t.value(), b"abc");
        assert!(t.disconnected() && t.disconnecting());
    }

    #[test]
    fn producer_state_follows_pause_resume_stop() {
        let mut t = StringTransport::new();
        t.pause_producing();
        assert_eq!(t.producer_state(), ProducerState::Paused);
        t.resume_producing();
        assert_eq!(t.producer_state(), ProducerState::Producing);
        t.stop_producing();
        assert_eq!(t.producer_state(), ProducerState::Stopped);
        t.resume_producing();
        assert_eq!(t.producer_state(), ProducerState::Stopped);
    }

    #[test]
    fn water_mark_edges() {
        let mut t = StringTransport::new();
        t.write(&vec![0; 65_536]);
        assert!(!t.writing_paused(), "exactly the high mark does not pause");
        t.write(b"x");
        assert!(t.writing_paused(), "one byte more pauses");
        t.clear();
        assert!(!t.writing_paused());
    }

    #[test]
    fn second_registration_is_refused() {
        struct P;
        impl Producer for P {
            fn resume_producing(&mut self, _: &mut crate::Cx<'_>) {}
        }
        let mut t = StringTransport::new();
        t.register_producer(Box::new(P), true).unwrap();
        assert!(t.streaming());
        assert!(matches!(
            t.register_producer(Box::new(P), false),
            Err(RegisterProducerError::AlreadyRegistered(_))
        ));
        t.unregister_producer();
        assert!(t.producer_mut().is_none());
        t.abort_connection();
        assert!(matches!(
            t.register_producer(Box::new(P), false),
            Err(RegisterProducerError::Disconnected(_))
        ));
    }

    #[test]
    fn default_addresses_match_twisted() {
        let t = StringTransport::new();
        assert_eq!(t.peer().to_string(), "tcp:192.168.1.1:54321");
        assert_eq!(t.host().to_string(), "tcp:10.0.0.1:12345");
    }
}
