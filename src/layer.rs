//! Stream layers: a byte transformation between a connection's socket and its protocol,
//! which is what TLS is (Twisted's `TLSMemoryBIOProtocol`).
//!
//! A layer is installed on a live connection with
//! [`Transport::start_tls`](crate::Transport::start_tls): bytes written before go out as they
//! are, bytes written after go through the layer. The reactor drives it: ciphertext read from
//! the socket goes to [`StreamLayer::read_wire`] and the plaintext it yields reaches
//! `data_received`; plaintext the protocol writes goes to [`StreamLayer::write_plain`] and the
//! wire bytes it yields are sent. The layer holds no socket and no clock.

use std::fmt;

/// Why a layer gave up on a connection (a TLS alert, a bad certificate, garbage instead of a
/// handshake). It reaches `connection_lost` as [`Reason::Tls`](crate::Reason::Tls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerError(pub String);

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LayerError {}

/// A transformation of one connection's byte stream in both directions.
pub trait StreamLayer: 'static {
    /// Bytes arrived from the wire: append the plaintext they complete to `plain` and the
    /// bytes that must be sent back (handshake, alerts) to `wire`. An error closes the
    /// connection after `wire` is sent.
    fn read_wire(
        &mut self,
        data: &[u8],
        plain: &mut Vec<u8>,
        wire: &mut Vec<u8>,
    ) -> Result<(), LayerError>;

    /// The protocol wrote `data`: append what goes on the wire to `wire`. Before the
    /// handshake completes a layer may keep the plaintext and send it later (from
    /// [`StreamLayer::read_wire`]).
    fn write_plain(&mut self, data: &[u8], wire: &mut Vec<u8>) -> Result<(), LayerError>;

    /// The connection is closing cleanly: append the closing bytes (TLS `close_notify`).
    fn close(&mut self, wire: &mut Vec<u8>);

    /// The peer closed the wire cleanly. Returns an error if that was a truncation the layer
    /// must report (a TLS stream closed without `close_notify`); `Ok` otherwise.
    fn wire_closed(&mut self) -> Result<(), LayerError> {
        Ok(())
    }

    /// Plaintext accepted but not yet on the wire (held until the handshake completes);
    /// counted against the write-buffer water marks.
    fn buffered_plaintext(&self) -> usize {
        0
    }

    /// What the layer negotiated, for `Transport::layer_info` (e.g. the ALPN protocol and TLS
    /// version); `None` while handshaking.
    fn info(&self) -> Option<LayerInfo> {
        None
    }
}

/// What a layer negotiated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerInfo {
    /// The protocol agreed by ALPN, if any.
    pub alpn: Option<Vec<u8>>,
    /// The protocol version, e.g. `"TLSv1.3"`.
    pub version: Option<String>,
    /// The server name the client asked for (SNI), on the server side.
    pub server_name: Option<String>,
    /// The peer's certificate chain, DER-encoded, leaf first.
    pub peer_certificates: Vec<Vec<u8>>,
}

impl LayerInfo {
    /// An empty description, to fill in field by field.
    pub fn new() -> Self {
        Self::default()
    }
}
