//! A client layer and a server layer pumped into each other in memory: no sockets, no
//! reactor. Certificates come from a CA made at test time.

use std::sync::OnceLock;

use proptest::prelude::*;

use super::*;
use crate::layer::{LayerError, StreamLayer};

struct Pki {
    ca: DevCa,
    server: (String, String),
    other: (String, String),
    client: (String, String),
    stranger_ca: DevCa,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = DevCa::new("torsion test CA").unwrap();
        Pki {
            server: ca.issue_server(&["localhost", "127.0.0.1"]).unwrap(),
            other: ca.issue_server(&["other.test"]).unwrap(),
            client: ca.issue_client("alice").unwrap(),
            stranger_ca: DevCa::new("someone else's CA").unwrap(),
            ca,
        }
    })
}

fn server_cfg() -> ServerTlsConfig {
    let (c, k) = &pki().server;
    ServerTlsConfig::from_pem(c.as_bytes(), k.as_bytes()).unwrap()
}

fn client_cfg(name: &str) -> ClientTlsConfig {
    ClientTlsConfig::new(name)
        .unwrap()
        .ca_pem(pki().ca.cert_pem().as_bytes())
        .unwrap()
}

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Client,
    Server,
}

/// Two layers and the four buffers between them, reused for every exchange.
struct Pair {
    client: TlsLayer,
    server: TlsLayer,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    at_server: Vec<u8>,
    at_client: Vec<u8>,
    scratch: Vec<u8>,
}

impl Pair {
    fn new(client: &ClientTlsConfig, server: &ServerTlsConfig) -> Pair {
        let mut p = Pair {
            client: client.layer().unwrap(),
            server: server.layer().unwrap(),
            to_server: Vec::new(),
            to_client: Vec::new(),
            at_server: Vec::new(),
            at_client: Vec::new(),
            scratch: Vec::new(),
        };
        // What a transport does right after installing a layer: let it speak first.
        p.client.write_plain(&[], &mut p.to_server).unwrap();
        p
    }

    /// Delivers bytes both ways until neither side has anything to send.
    fn pump(&mut self) -> Result<(), (End, LayerError)> {
        while !self.to_server.is_empty() || !self.to_client.is_empty() {
            if !self.to_server.is_empty() {
                std::mem::swap(&mut self.scratch, &mut self.to_server);
                let r =
                    self.server
                        .read_wire(&self.scratch, &mut self.at_server, &mut self.to_client);
                self.scratch.clear();
                r.map_err(|e| (End::Server, e))?;
            }
            if !self.to_client.is_empty() {
                std::mem::swap(&mut self.scratch, &mut self.to_client);
                let r =
                    self.client
                        .read_wire(&self.scratch, &mut self.at_client, &mut self.to_server);
                self.scratch.clear();
                r.map_err(|e| (End::Client, e))?;
            }
        }
        Ok(())
    }

    /// Pumps until both ends have failed, returning each one's error.
    fn both_errors(&mut self) -> (LayerError, LayerError) {
        let mut client = None;
        let mut server = None;
        for _ in 0..4 {
            match self.pump() {
                Err((End::Client, e)) => client = client.or(Some(e)),
                Err((End::Server, e)) => server = server.or(Some(e)),
                Ok(()) => break,
            }
        }
        (
            client.expect("the client did not fail"),
            server.expect("the server did not fail"),
        )
    }
}

#[test]
fn handshake_completes_and_reports_what_was_negotiated() {
    let mut p = Pair::new(&client_cfg("localhost"), &server_cfg());
    assert!(p.client.info().is_none() && p.server.info().is_none());
    p.pump().unwrap();
    assert!(!p.client.is_handshaking() && !p.server.is_handshaking());
    let (c, s) = (p.client.info().unwrap(), p.server.info().unwrap());
    assert_eq!(c.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(s.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(s.server_name.as_deref(), Some("localhost"));
    assert_eq!(c.peer_certificates, vec![der(&pki().server.0)]);
    assert!(s.peer_certificates.is_empty());
    assert_eq!((c.alpn, s.alpn), (None, None));
}

/// A byte pattern that a shifted or dropped chunk cannot reproduce.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn exchange(p: &mut Pair, total: usize, chunk: usize) {
    let up = pattern(total, 1);
    let down = pattern(total, 2);
    for (a, b) in up.chunks(chunk).zip(down.chunks(chunk)) {
        p.client.write_plain(a, &mut p.to_server).unwrap();
        p.server.write_plain(b, &mut p.to_client).unwrap();
        p.pump().unwrap();
    }
    assert!(p.at_server == up, "client-to-server plaintext differs");
    assert!(p.at_client == down, "server-to-client plaintext differs");
}

#[test]
fn sixteen_mib_both_ways_in_16_kib_writes() {
    let mut p = Pair::new(&client_cfg("localhost"), &server_cfg());
    exchange(&mut p, 16 << 20, 16 << 10);
}

#[test]
fn tls12_and_tls13_each() {
    for v in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let server = server_cfg().versions(&[v]).unwrap();
        let mut p = Pair::new(&client_cfg("localhost"), &server);
        exchange(&mut p, 256 << 10, 10_000);
        assert_eq!(p.client.info().unwrap().version.as_deref(), Some(v.name()));
        assert_eq!(p.server.info().unwrap().version.as_deref(), Some(v.name()));
    }
}

#[test]
fn no_common_version_is_named_on_both_ends() {
    let server = server_cfg().versions(&[TlsVersion::Tls13]).unwrap();
    let client = client_cfg("localhost")
        .versions(&[TlsVersion::Tls12])
        .unwrap();
    let (c, s) = Pair::new(&client, &server).both_errors();
    assert!(s.0.contains("protocol version"), "server: {s}");
    assert!(c.0.contains("protocol version"), "client: {c}");
}

#[test]
fn sni_picks_the_certificate_by_name() {
    let (oc, ok) = &pki().other;
    let server = server_cfg()
        .sni_pem("other.test", oc.as_bytes(), ok.as_bytes())
        .unwrap();
    let mut p = Pair::new(&client_cfg("other.test"), &server);
    p.pump().unwrap();
    assert_eq!(
        p.client.info().unwrap().peer_certificates[0],
        der(&pki().other.0)
    );
    assert_eq!(
        p.server.info().unwrap().server_name.as_deref(),
        Some("other.test")
    );
    let mut p = Pair::new(&client_cfg("localhost"), &server);
    p.pump().unwrap();
    assert_eq!(
        p.client.info().unwrap().peer_certificates[0],
        der(&pki().server.0)
    );
}

#[test]
fn an_ip_address_is_verified_and_sends_no_sni() {
    let mut p = Pair::new(&client_cfg("127.0.0.1"), &server_cfg());
    p.pump().unwrap();
    assert_eq!(p.server.info().unwrap().server_name, None);
}

#[test]
fn alpn_result_is_visible_on_both_ends() {
    let server = server_cfg().alpn(&[b"h2", b"http/1.1"]);
    let client = client_cfg("localhost").alpn(&[b"http/1.1", b"spdy/1"]);
    let mut p = Pair::new(&client, &server);
    p.pump().unwrap();
    assert_eq!(
        p.client.info().unwrap().alpn.as_deref(),
        Some(&b"http/1.1"[..])
    );
    assert_eq!(
        p.server.info().unwrap().alpn.as_deref(),
        Some(&b"http/1.1"[..])
    );
}

#[test]
fn no_alpn_overlap_fails_with_a_reason() {
    let server = server_cfg().alpn(&[b"h2"]);
    let client = client_cfg("localhost").alpn(&[b"imap"]);
    let (c, s) = Pair::new(&client, &server).both_errors();
    assert!(s.0.contains("ALPN"), "server: {s}");
    assert!(c.0.contains("ALPN"), "client: {c}");
}

#[test]
fn a_client_with_the_wrong_ca_names_an_unknown_issuer() {
    let client = ClientTlsConfig::new("localhost")
        .unwrap()
        .ca_pem(pki().stranger_ca.cert_pem().as_bytes())
        .unwrap();
    let (c, s) = Pair::new(&client, &server_cfg()).both_errors();
    assert!(c.0.contains("unknown issuer"), "client: {c}");
    assert!(s.0.contains("unknown CA"), "server: {s}");
}

#[test]
fn a_certificate_for_another_name_is_rejected() {
    let (c, _) = Pair::new(&client_cfg("example.org"), &server_cfg()).both_errors();
    assert!(c.0.contains("not valid for"), "client: {c}");
}

#[test]
fn required_client_auth_without_a_certificate_fails() {
    let server = server_cfg()
        .client_auth_pem(ClientAuth::Required, pki().ca.cert_pem().as_bytes())
        .unwrap();
    let (c, s) = Pair::new(&client_cfg("localhost"), &server).both_errors();
    assert!(s.0.contains("no certificate"), "server: {s}");
    assert!(c.0.contains("client certificate"), "client: {c}");
}

#[test]
fn client_certificates_are_verified_and_visible() {
    let (cc, ck) = &pki().client;
    let client = client_cfg("localhost")
        .client_cert_pem(cc.as_bytes(), ck.as_bytes())
        .unwrap();
    for mode in [ClientAuth::Optional, ClientAuth::Required] {
        let server = server_cfg()
            .client_auth_pem(mode, pki().ca.cert_pem().as_bytes())
            .unwrap();
        let mut p = Pair::new(&client, &server);
        p.pump().unwrap();
        assert_eq!(p.server.info().unwrap().peer_certificates[0], der(cc));
    }
    // Optional: a client without one is served.
    let server = server_cfg()
        .client_auth_pem(ClientAuth::Optional, pki().ca.cert_pem().as_bytes())
        .unwrap();
    let mut p = Pair::new(&client_cfg("localhost"), &server);
    p.pump().unwrap();
    assert!(p.server.info().unwrap().peer_certificates.is_empty());
    // A client certificate from another CA is refused.
    let (sc, sk) = pki().stranger_ca.issue_client("mallory").unwrap();
    let stranger = client_cfg("localhost")
        .client_cert_pem(sc.as_bytes(), sk.as_bytes())
        .unwrap();
    let (_, s) = Pair::new(&stranger, &server).both_errors();
    assert!(s.0.contains("unknown issuer"), "server: {s}");
}

#[test]
fn garbage_instead_of_a_client_hello_is_an_error() {
    let mut server = server_cfg().layer().unwrap();
    let (mut plain, mut wire) = (Vec::new(), Vec::new());
    let e = server
        .read_wire(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut plain, &mut wire)
        .unwrap_err();
    assert!(e.0.starts_with("not a TLS handshake"), "{e}");
    assert!(plain.is_empty());
    assert!(server.rustls_error().is_some());
    // The failure sticks, and nothing further is decrypted or panics.
    assert_eq!(
        server.read_wire(b"more", &mut plain, &mut wire),
        Err(e.clone())
    );
    assert_eq!(server.write_plain(b"x", &mut wire), Err(e));
    assert!(
        server.wire_closed().is_ok(),
        "the failure was reported already"
    );
}

#[test]
fn close_notify_then_eof_is_clean() {
    let mut p = Pair::new(&client_cfg("localhost"), &server_cfg());
    p.client.write_plain(b"bye", &mut p.to_server).unwrap();
    p.pump().unwrap();
    p.client.close(&mut p.to_server);
    assert!(!p.to_server.is_empty(), "close_notify goes on the wire");
    // The closing side does not need the peer's close_notify in answer.
    assert_eq!(p.client.wire_closed(), Ok(()));
    p.pump().unwrap();
    assert!(p.server.peer_closed());
    assert!(p.client.peer_closed(), "close_notify is answered in kind");
    assert_eq!(p.at_server, b"bye");
    assert_eq!(p.server.wire_closed(), Ok(()));
    // Writes after close are dropped quietly, as on any closed transport.
    let before = p.to_server.len();
    p.client.write_plain(b"late", &mut p.to_server).unwrap();
    assert_eq!(p.to_server.len(), before);
}

#[test]
fn eof_without_close_notify_is_a_truncation() {
    let mut p = Pair::new(&client_cfg("localhost"), &server_cfg());
    let mid = p.server.wire_closed().unwrap_err();
    assert!(mid.0.contains("during the TLS handshake"), "{mid}");
    p.pump().unwrap();
    let e = p.server.wire_closed().unwrap_err();
    assert!(e.0.contains("without sending close_notify"), "{e}");
}

#[test]
fn plaintext_written_before_the_handshake_is_held_and_counted() {
    let mut p = Pair::new(&client_cfg("localhost"), &server_cfg());
    p.client.set_buffer_limit(4096);
    let hello_len = p.to_server.len();
    let data = pattern(1 << 20, 3);
    for chunk in data.chunks(16 << 10) {
        p.client.write_plain(chunk, &mut p.to_server).unwrap();
    }
    assert_eq!(p.client.buffered_plaintext(), 1 << 20);
    assert_eq!(
        p.to_server.len(),
        hello_len,
        "nothing but the ClientHello yet"
    );
    p.pump().unwrap();
    assert_eq!(p.client.buffered_plaintext(), 0);
    assert!(p.at_server == data);
}

#[test]
fn close_during_the_handshake_sends_held_plaintext_first() {
    let mut p = Pair::new(&client_cfg("localhost"), &server_cfg());
    p.client.write_plain(b"early", &mut p.to_server).unwrap();
    p.client.close(&mut p.to_server);
    assert!(p.client.info().is_none());
    p.pump().unwrap();
    assert_eq!(p.at_server, b"early");
    assert!(p.server.peer_closed());
    assert_eq!(p.server.wire_closed(), Ok(()));
}

#[test]
fn a_server_closing_before_the_client_hello_still_sends_its_words() {
    let mut server = server_cfg().layer().unwrap();
    let mut early = Vec::new();
    server.write_plain(b"bye", &mut early).unwrap();
    server.close(&mut early);
    assert!(
        early.is_empty(),
        "nothing can go out before the ClientHello"
    );
    let mut p = Pair::new(&client_cfg("localhost"), &server_cfg());
    p.server = server;
    p.pump().unwrap();
    assert_eq!(p.at_client, b"bye");
    assert!(p.client.peer_closed());
    assert_eq!(p.server.buffered_plaintext(), 0);
}

#[test]
fn configurations_and_layers_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ServerTlsConfig>();
    send_sync::<ClientTlsConfig>();
    send::<TlsLayer>();
}

#[test]
fn writes_after_the_handshake_make_full_size_records() {
    let mut p = Pair::new(&client_cfg("localhost"), &server_cfg());
    p.client.set_buffer_limit(1024);
    p.pump().unwrap();
    p.client
        .write_plain(&[7u8; 16 << 10], &mut p.to_server)
        .unwrap();
    // One record: a 5-byte header, the plaintext, the content type and the AEAD tag.
    assert!(
        p.to_server.len() < (16 << 10) + 64,
        "{} bytes",
        p.to_server.len()
    );
    p.pump().unwrap();
    assert_eq!(p.at_server.len(), 16 << 10);
}

#[test]
fn the_server_may_speak_first() {
    let mut p = Pair::new(&client_cfg("localhost"), &server_cfg());
    p.server
        .write_plain(b"220 ready\r\n", &mut p.to_client)
        .unwrap();
    p.pump().unwrap();
    assert_eq!(p.at_client, b"220 ready\r\n");
}

#[test]
fn records_split_at_every_byte_still_decode() {
    let mut p = Pair::new(&client_cfg("localhost"), &server_cfg());
    p.pump().unwrap();
    p.client
        .write_plain(b"one byte at a time", &mut p.to_server)
        .unwrap();
    let wire = std::mem::take(&mut p.to_server);
    for b in &wire {
        p.server
            .read_wire(std::slice::from_ref(b), &mut p.at_server, &mut p.to_client)
            .unwrap();
    }
    assert_eq!(p.at_server, b"one byte at a time");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_a_server(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..8)
    ) {
        let mut server = server_cfg().layer().unwrap();
        let (mut plain, mut wire) = (Vec::new(), Vec::new());
        for c in &chunks {
            if server.read_wire(c, &mut plain, &mut wire).is_err() {
                break;
            }
        }
        let _ = server.wire_closed();
        let _ = server.info();
        prop_assert!(plain.is_empty());
    }

    #[test]
    fn a_valid_hello_then_arbitrary_bytes_never_panic(
        tail in prop::collection::vec(any::<u8>(), 0..2000), cut in 0usize..400
    ) {
        let mut client = client_cfg("localhost").layer().unwrap();
        let mut hello = Vec::new();
        client.write_plain(&[], &mut hello).unwrap();
        let cut = cut.min(hello.len());
        hello.truncate(hello.len() - cut);
        hello.extend_from_slice(&tail);
        let mut server = server_cfg().layer().unwrap();
        let (mut plain, mut wire) = (Vec::new(), Vec::new());
        let _ = server.read_wire(&hello, &mut plain, &mut wire);
        let _ = server.wire_closed();
        prop_assert!(plain.is_empty());
    }
}
