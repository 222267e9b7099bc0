//! [`TlsLayer`]: a rustls connection as a [`StreamLayer`], with no socket inside.

use std::io::{BufRead, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ProtocolVersion, ServerConfig};

use super::error::{Side, describe};
use crate::layer::{LayerError, LayerInfo, StreamLayer};

/// How much plaintext rustls itself holds before the handshake completes (its default,
/// and the transports' default high water mark). What is written beyond it waits in the
/// layer; both count in [`StreamLayer::buffered_plaintext`], so flow control sees all of it.
pub const DEFAULT_BUFFER_LIMIT: usize = 64 * 1024;

/// TLS on one connection: a rustls client or server connection driven as a
/// [`StreamLayer`] (Twisted's `TLSMemoryBIOProtocol`).
///
/// Make one with [`ServerTlsConfig::layer`](super::ServerTlsConfig::layer) or
/// [`ClientTlsConfig::layer`](super::ClientTlsConfig::layer) and install it with
/// [`Transport::start_tls`](crate::Transport::start_tls), or drive it by hand: bytes from the
/// peer go to [`StreamLayer::read_wire`], plaintext to send to [`StreamLayer::write_plain`];
/// both append what must go on the wire to a `Vec` the caller owns and reuses.
///
/// ```
/// use torsion::layer::StreamLayer;
/// use torsion::tls::{ClientTlsConfig, DevCa, ServerTlsConfig};
///
/// let ca = DevCa::new("Test CA")?;
/// let (cert, key) = ca.issue_server(&["localhost"])?;
/// let server_cfg = ServerTlsConfig::from_pem(cert.as_bytes(), key.as_bytes())?;
/// let client_cfg = ClientTlsConfig::new("localhost")?.ca_pem(ca.cert_pem().as_bytes())?;
/// let (mut client, mut server) = (client_cfg.layer()?, server_cfg.layer()?);
///
/// let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
/// let (mut at_client, mut at_server) = (Vec::new(), Vec::new());
/// client.write_plain(b"hello", &mut to_server)?; // held until the handshake completes
/// while !to_server.is_empty() || !to_client.is_empty() {
///     server.read_wire(&std::mem::take(&mut to_server), &mut at_server, &mut to_client)?;
///     client.read_wire(&std::mem::take(&mut to_client), &mut at_client, &mut to_server)?;
/// }
/// assert_eq!(at_server, b"hello");
/// assert_eq!(server.info().unwrap().version.as_deref(), Some("TLSv1.3"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TlsLayer {
    conn: Connection,
    side: Side,
    /// Plaintext written while rustls's own pre-handshake buffer was full.
    pending: Vec<u8>,
    /// Plaintext rustls accepted while handshaking: it may still be inside rustls.
    held: usize,
    /// `close` came while plaintext still waited for the handshake; close_notify follows it.
    close_after_handshake: bool,
    sent_close: bool,
    peer_closed: bool,
    failure: Option<(rustls::Error, LayerError)>,
    info: Option<LayerInfo>,
}

impl std::fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsLayer")
            .field("side", &self.side)
            .field("handshaking", &self.conn.is_handshaking())
            .field("buffered_plaintext", &self.buffered_plaintext())
            .field("failed", &self.failure.as_ref().map(|f| &f.1))
            .finish()
    }
}

impl TlsLayer {
    /// A server layer over any rustls server configuration.
    pub fn server(config: Arc<ServerConfig>) -> Result<TlsLayer, LayerError> {
        let conn = rustls::ServerConnection::new(config)
            .map_err(|e| LayerError(format!("cannot start a TLS server session: {e}")))?;
        Ok(TlsLayer::new(conn.into(), Side::Server))
    }

    /// A client layer over any rustls client configuration, checking the server's certificate
    /// against `server_name` (also sent as SNI when it is a DNS name).
    pub fn client(
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<TlsLayer, LayerError> {
        let conn = ClientConnection::new(config, server_name)
            .map_err(|e| LayerError(format!("cannot start a TLS client session: {e}")))?;
        Ok(TlsLayer::new(conn.into(), Side::Client))
    }

    fn new(mut conn: Connection, side: Side) -> TlsLayer {
        conn.set_buffer_limit(Some(DEFAULT_BUFFER_LIMIT));
        TlsLayer {
            conn,
            side,
            pending: Vec::new(),
            held: 0,
            close_after_handshake: false,
            sent_close: false,
            peer_closed: false,
            failure: None,
            info: None,
        }
    }

    /// Sets how much plaintext rustls buffers before the handshake completes (the rest waits
    /// in the layer, counted all the same by [`StreamLayer::buffered_plaintext`]). After the
    /// handshake there is no such buffer: each write is encrypted into the caller's `wire`
    /// at once, so this has no effect then.
    pub fn set_buffer_limit(&mut self, limit: usize) {
        if self.info.is_none() {
            self.conn.set_buffer_limit(Some(limit));
        }
    }

    /// True until the handshake has completed.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True once the peer's `close_notify` has arrived.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The rustls error that ended the session, if one did, for callers that want to
    /// match on it rather than read the sentence.
    pub fn rustls_error(&self) -> Option<&rustls::Error> {
        self.failure.as_ref().map(|f| &f.0)
    }

    /// The rustls connection, for what the layer does not expose (cipher suite, key
    /// export).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn fail(&mut self, err: rustls::Error, wire: &mut Vec<u8>) -> LayerError {
        let text = describe(&err, self.side, self.conn.is_handshaking());
        let layer_err = LayerError(text);
        // rustls queued an alert telling the peer why; it goes out before the close.
        self.drain_tls(wire);
        self.failure = Some((err, layer_err.clone()));
        layer_err
    }

    fn drain_tls(&mut self, wire: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(wire).unwrap_or(0) == 0 {
                break;
            }
        }
    }

    /// Hands `data` to rustls, draining each record into `wire` as it is made; returns how
    /// much rustls took (less than all only while its pre-handshake buffer is full).
    fn push_plain(&mut self, mut data: &[u8], wire: &mut Vec<u8>) -> usize {
        let total = data.len();
        while !data.is_empty() {
            let handshaking = self.conn.is_handshaking();
            let n = self.conn.writer().write(data).unwrap_or(0);
            if handshaking {
                self.held += n;
            }
            self.drain_tls(wire);
            if n == 0 {
                break;
            }
            data = &data[n..];
        }
        total - data.len()
    }

    /// After the handshake: sends what waited in the layer, then a deferred close_notify.
    fn flush_pending(&mut self, wire: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let n = self.push_plain(&pending, wire);
            self.pending = pending;
            self.pending.drain(..n);
        }
        if self.close_after_handshake && self.pending.is_empty() && !self.conn.is_handshaking() {
            self.close_after_handshake = false;
            self.send_close(wire);
        }
    }

    fn send_close(&mut self, wire: &mut Vec<u8>) {
        if !self.sent_close {
            self.sent_close = true;
            self.conn.send_close_notify();
            self.drain_tls(wire);
        }
    }

    fn handshake_done(&mut self) {
        self.held = 0;
        // From now on every record is drained into `wire` as soon as it is made, so rustls's
        // limit would only cut writes into records smaller than the 16 KiB maximum.
        self.conn.set_buffer_limit(None);
        let mut info = LayerInfo::new();
        info.alpn = self.conn.alpn_protocol().map(<[u8]>::to_vec);
        info.version = self.conn.protocol_version().map(|v| {
            match v {
                ProtocolVersion::TLSv1_3 => "TLSv1.3",
                ProtocolVersion::TLSv1_2 => "TLSv1.2",
                _ => "unknown",
            }
            .to_owned()
        });
        if let Connection::Server(s) = &self.conn {
            info.server_name = s.server_name().map(str::to_owned);
        }
        info.peer_certificates = self
            .conn
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.as_ref().to_vec()).collect())
            .unwrap_or_default();
        self.info = Some(info);
    }
}

impl StreamLayer for TlsLayer {
    /// Feeds ciphertext to rustls record by record, moving decrypted plaintext straight from
    /// rustls's buffers into `plain` (no copy through a scratch buffer) and the handshake,
    /// alerts and held plaintext into `wire`.
    fn read_wire(
        &mut self,
        data: &[u8],
        plain: &mut Vec<u8>,
        wire: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        if let Some((_, e)) = &self.failure {
            return Err(e.clone());
        }
        let mut rest = data;
        // An empty read would tell rustls the stream ended: never make one.
        while !rest.is_empty() {
            if let Err(e) = self.conn.read_tls(&mut rest) {
                let err = rustls::Error::General(format!("cannot take TLS data: {e}"));
                return Err(self.fail(err, wire));
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => return Err(self.fail(e, wire)),
            };
            if state.plaintext_bytes_to_read() > 0 {
                let mut reader = self.conn.reader();
                while let Ok(chunk) = reader.fill_buf() {
                    if chunk.is_empty() {
                        break;
                    }
                    let n = chunk.len();
                    plain.extend_from_slice(chunk);
                    reader.consume(n);
                }
            }
            if state.peer_has_closed() && !self.peer_closed {
                self.peer_closed = true;
                // Answer in kind, as TLS 1.2 requires and Twisted does: peers that wait for
                // our close_notify (Python's `unwrap`, OpenSSL's `SSL_shutdown`) then close
                // the socket, and the connection ends cleanly.
                self.send_close(wire);
            }
            self.drain_tls(wire);
        }
        if self.info.is_none() && !self.conn.is_handshaking() {
            self.handshake_done();
        }
        if self.info.is_some() {
            self.flush_pending(wire);
        }
        Ok(())
    }

    /// Encrypts `data` into `wire` once the handshake is done; before, rustls holds up to its
    /// buffer limit and the layer holds the rest. An empty `data` still emits whatever is
    /// ready: a client's ClientHello right after the layer is installed.
    fn write_plain(&mut self, data: &[u8], wire: &mut Vec<u8>) -> Result<(), LayerError> {
        if let Some((_, e)) = &self.failure {
            return Err(e.clone());
        }
        if self.sent_close || self.close_after_handshake {
            return Ok(());
        }
        if !self.pending.is_empty() {
            // Order matters: older plaintext first, and nothing may overtake it.
            self.flush_pending(wire);
        }
        if self.pending.is_empty() {
            let n = self.push_plain(data, wire);
            self.pending.extend_from_slice(&data[n..]);
        } else {
            self.pending.extend_from_slice(data);
        }
        self.drain_tls(wire);
        Ok(())
    }

    /// Sends close_notify. While plaintext still waits for the handshake, the alert waits
    /// too (it would discard that plaintext): it goes out from `read_wire` once the handshake
    /// completes, so a transport closing a layer whose [`StreamLayer::info`] is still `None`
    /// should keep reading until it is `Some` (or the peer goes away).
    fn close(&mut self, wire: &mut Vec<u8>) {
        if self.failure.is_some() {
            return;
        }
        if self.conn.is_handshaking() && self.buffered_plaintext() > 0 {
            self.close_after_handshake = true;
        } else {
            self.send_close(wire);
        }
    }

    /// Clean when the peer sent close_notify first, or when we had already sent ours (a peer
    /// that closes the socket in answer without its own close_notify truncates nothing we
    /// wait for). A failure already reported is not reported twice.
    fn wire_closed(&mut self) -> Result<(), LayerError> {
        if self.peer_closed || self.sent_close || self.failure.is_some() {
            return Ok(());
        }
        let peer = match self.side {
            Side::Client => "server",
            Side::Server => "client",
        };
        Err(LayerError(if self.conn.is_handshaking() {
            format!("the {peer} closed the connection during the TLS handshake")
        } else {
            format!("the {peer} closed the connection without sending close_notify (truncation)")
        }))
    }

    fn buffered_plaintext(&self) -> usize {
        self.held + self.pending.len()
    }

    fn info(&self) -> Option<LayerInfo> {
        self.info.clone()
    }
}
