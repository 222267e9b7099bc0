//! TLS over loopback sockets: torsion against torsion and against blocking rustls peers.
//! Handshakes in both versions, ALPN and SNI seen from both ends, failures with their
//! reasons, STARTTLS, close_notify, 64 MiB through an echo, and garbage instead of a
//! ClientHello.

mod common;
mod tls_common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;

use sha2::{Digest, Sha256};
use torsion::tls::{ClientAuth, ClientTlsConfig, ServerTlsConfig, TlsVersion};
use torsion::tls::{start_tls_client, start_tls_server};
use torsion::{Cx, Factory, Producer, Protocol, Reactor, Reason};

use common::*;
use tls_common::*;

/// Stops the reactor once `n` connections have ended.
fn stop_after(n: usize) -> Rc<dyn Fn(&Reactor)> {
    let left = Rc::new(Cell::new(n));
    Rc::new(move |r: &Reactor| {
        left.set(left.get() - 1);
        if left.get() == 0 {
            let _ = r.stop();
        }
    })
}

/// A TLS echo server that notes its layer info and reports each ending to `done`.
fn echo_server(log: &Log, info: &InfoCell, done: &Rc<dyn Fn(&Reactor)>) -> Rc<dyn Factory> {
    let (log, info, done) = (log.clone(), info.clone(), done.clone());
    factory(move || {
        let (info, done) = (info.clone(), done.clone());
        Rec::new(&log)
            .on_data(move |cx, d| {
                note_info(cx, &info);
                cx.transport().write(d);
            })
            .on_lost(move |cx, _| done(cx.reactor()))
            .boxed()
    })
}

/// A client that sends `msg`, notes its layer info once the echo is complete, then closes.
fn echo_client(
    log: &Log,
    info: &InfoCell,
    done: &Rc<dyn Fn(&Reactor)>,
    msg: &'static [u8],
) -> Rc<dyn torsion::ClientFactory> {
    let (log, info, done) = (log.clone(), info.clone(), done.clone());
    let got = Rc::new(RefCell::new(Vec::new()));
    factory(move || {
        let (info, done, got) = (info.clone(), done.clone(), got.clone());
        Rec::new(&log)
            .on_made(move |cx| cx.transport().write(msg))
            .on_data(move |cx, d| {
                got.borrow_mut().extend_from_slice(d);
                if got.borrow().len() == msg.len() {
                    note_info(cx, &info);
                    cx.transport().lose_connection();
                }
            })
            .on_lost(move |cx, _| done(cx.reactor()))
            .boxed()
    })
}

#[test]
fn torsion_to_torsion_in_both_versions_with_alpn() {
    for v in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let pki = Pki::new();
        let reactor = reactor();
        let (slog, clog, sinfo, cinfo) = (new_log(), new_log(), info_cell(), info_cell());
        let done = stop_after(2);
        let server = pki
            .server()
            .versions(&[v])
            .unwrap()
            .alpn(&[b"h2", b"http/1.1"]);
        let addr = listen_tls(&reactor, echo_server(&slog, &sinfo, &done), &server);
        let client = pki.client("localhost").alpn(&[b"http/1.1"]);
        let msg: &'static [u8] = b"hello over TLS";
        reactor.connect_tls(
            "127.0.0.1",
            addr.port(),
            echo_client(&clog, &cinfo, &done, msg),
            &client,
        );
        run(&reactor);
        assert!(check_lifecycle(&clog).is_clean());
        assert!(check_lifecycle(&slog).is_clean());
        assert_eq!(received(&clog), msg);
        for info in [&sinfo, &cinfo] {
            let info = info
                .borrow()
                .clone()
                .expect("layer info after the handshake");
            assert_eq!(info.version.as_deref(), Some(v.name()));
            assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
        }
        let c = cinfo.borrow().clone().unwrap();
        assert_eq!(c.peer_certificates[0], pki.der(&pki.server_cert));
    }
}

#[test]
fn a_client_with_the_wrong_ca_fails_with_a_clear_reason_on_both_ends() {
    let pki = Pki::new();
    let reactor = reactor();
    let (slog, clog, sinfo, cinfo) = (new_log(), new_log(), info_cell(), info_cell());
    let done = stop_after(2);
    let addr = listen_tls(&reactor, echo_server(&slog, &sinfo, &done), &pki.server());
    let client = ClientTlsConfig::new("localhost")
        .unwrap()
        .ca_file(&pki.stranger_ca_file)
        .unwrap();
    reactor.connect_tls(
        "127.0.0.1",
        addr.port(),
        echo_client(&clog, &cinfo, &done, b"x"),
        &client,
    );
    run(&reactor);
    let c = tls_text(&check_lifecycle(&clog));
    assert!(c.contains("unknown issuer"), "client: {c}");
    let s = tls_text(&check_lifecycle(&slog));
    assert!(s.contains("unknown CA"), "server: {s}");
    assert!(
        received(&slog).is_empty(),
        "nothing may be delivered from an untrusted peer"
    );
}

#[test]
fn sni_picks_the_certificate_and_the_server_sees_the_name() {
    let pki = Pki::new();
    let reactor = reactor();
    let (slog, clog, sinfo, cinfo) = (new_log(), new_log(), info_cell(), info_cell());
    let done = stop_after(2);
    let addr = listen_tls(
        &reactor,
        echo_server(&slog, &sinfo, &done),
        &pki.server_with_sni(),
    );
    let client = pki.client("other.test");
    reactor.connect_tls(
        "127.0.0.1",
        addr.port(),
        echo_client(&clog, &cinfo, &done, b"sni"),
        &client,
    );
    run(&reactor);
    assert!(check_lifecycle(&clog).is_clean());
    let c = cinfo.borrow().clone().unwrap();
    assert_eq!(c.peer_certificates[0], pki.der(&pki.other_cert));
    let s = sinfo.borrow().clone().unwrap();
    assert_eq!(s.server_name.as_deref(), Some("other.test"));
}

#[test]
fn client_certificates_required_and_presented() {
    let pki = Pki::new();
    let server = pki
        .server()
        .client_auth(ClientAuth::Required, &pki.ca_file)
        .unwrap();
    // With a certificate: served, and the server sees it.
    let reactor = reactor();
    let (slog, clog, sinfo, cinfo) = (new_log(), new_log(), info_cell(), info_cell());
    let done = stop_after(2);
    let addr = listen_tls(&reactor, echo_server(&slog, &sinfo, &done), &server);
    let client = pki
        .client("localhost")
        .client_cert(&pki.client_cert, &pki.client_key)
        .unwrap();
    reactor.connect_tls(
        "127.0.0.1",
        addr.port(),
        echo_client(&clog, &cinfo, &done, b"me"),
        &client,
    );
    run(&reactor);
    assert!(check_lifecycle(&slog).is_clean());
    let s = sinfo.borrow().clone().unwrap();
    assert_eq!(s.peer_certificates[0], pki.der(&pki.client_cert));
    // Without: the server names what is missing.
    let reactor = common::reactor();
    let (slog, clog, sinfo, cinfo) = (new_log(), new_log(), info_cell(), info_cell());
    let done = stop_after(2);
    let addr = listen_tls(&reactor, echo_server(&slog, &sinfo, &done), &server);
    reactor.connect_tls(
        "127.0.0.1",
        addr.port(),
        echo_client(&clog, &cinfo, &done, b"me"),
        &pki.client("localhost"),
    );
    run(&reactor);
    let s = tls_text(&check_lifecycle(&slog));
    assert!(s.contains("no certificate"), "server: {s}");
    assert!(check_lifecycle(&clog).is_lost());
}

/// Line-based STARTTLS: `STARTTLS\r\n` in clear, `OK\r\n` in clear, then TLS both ways; the
/// encrypted part is echoed.
struct StartTlsServer {
    cfg: ServerTlsConfig,
    clear: Vec<u8>,
    switched: bool,
    info: InfoCell,
    done: Rc<dyn Fn(&Reactor)>,
}

impl Protocol for StartTlsServer {
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        if self.switched {
            note_info(cx, &self.info);
            cx.transport().write(data);
            return;
        }
        self.clear.extend_from_slice(data);
        if self.clear == b"STARTTLS\r\n" {
            cx.transport().write(b"OK\r\n");
            start_tls_server(cx.transport(), &self.cfg).expect("start TLS");
            self.switched = true;
        }
    }

    fn connection_lost(&mut self, cx: &mut Cx<'_>, _reason: Reason) {
        (self.done)(cx.reactor());
    }
}

fn start_tls_factory(
    cfg: ServerTlsConfig,
    info: &InfoCell,
    done: &Rc<dyn Fn(&Reactor)>,
) -> Rc<dyn Factory> {
    let (info, done) = (info.clone(), done.clone());
    factory(move || {
        Box::new(StartTlsServer {
            cfg: cfg.clone(),
            clear: Vec::new(),
            switched: false,
            info: info.clone(),
            done: done.clone(),
        })
    })
}

#[test]
fn starttls_round_trip_between_torsion_peers() {
    let pki = Pki::new();
    let reactor = reactor();
    let (sinfo, cinfo, clog) = (info_cell(), info_cell(), new_log());
    let done = stop_after(2);
    let addr = listen(&reactor, start_tls_factory(pki.server(), &sinfo, &done));
    let cfg = pki.client("localhost");
    let (ci, d) = (cinfo.clone(), done.clone());
    let got = Rc::new(RefCell::new(Vec::new()));
    let client = factory(move || {
        let (cfg, ci, d, got) = (cfg.clone(), ci.clone(), d.clone(), got.clone());
        Rec::new(&clog)
            .on_made(|cx| cx.transport().write(b"STARTTLS\r\n"))
            .on_data(move |cx, data| {
                got.borrow_mut().extend_from_slice(data);
                if *got.borrow() == b"OK\r\n" {
                    got.borrow_mut().clear();
                    start_tls_client(cx.transport(), &cfg).expect("start TLS");
                    cx.transport().write(b"secret\r\n");
                } else if *got.borrow() == b"secret\r\n" {
                    note_info(cx, &ci);
                    cx.transport().lose_connection();
                }
            })
            .on_lost(move |cx, _| d(cx.reactor()))
            .boxed()
    });
    reactor.connect_tcp("127.0.0.1", addr.port(), client);
    run(&reactor);
    assert!(
        cinfo.borrow().is_some(),
        "the client never saw its echo over TLS"
    );
    assert!(
        sinfo.borrow().is_some(),
        "the server never got data over TLS"
    );
}

#[test]
fn starttls_with_a_blocking_rustls_client_proves_the_wire_is_tls() {
    let pki = Pki::new();
    let reactor = reactor();
    let sinfo = info_cell();
    let addr = listen(
        &reactor,
        start_tls_factory(pki.server(), &sinfo, &stop_after(1)),
    );
    let cfg = pki.client("localhost");
    let h = client_then_stop(&reactor, move || {
        let mut sock = connect(addr);
        sock.write_all(b"STARTTLS\r\n").unwrap();
        let mut ok = [0u8; 4];
        sock.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"OK\r\n");
        let mut tls = rustls_client_over(sock, &cfg);
        tls.write_all(b"encrypted\r\n").unwrap();
        let mut back = [0u8; 11];
        tls.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"encrypted\r\n");
        tls.conn.send_close_notify();
        tls.flush().unwrap();
    });
    run(&reactor);
    join(h);
    assert!(sinfo.borrow().is_some());
}

/// Writes `total` bytes of a long-period pattern, one piece per request (a pull producer),
/// so the write buffer, plaintext held by the layer included, stays bounded.
struct Feed {
    total: usize,
    sent: usize,
    src: Rc<Vec<u8>>,
    buf: Vec<u8>,
}

impl Producer for Feed {
    fn resume_producing(&mut self, cx: &mut Cx<'_>) {
        if self.sent == self.total {
            cx.transport().unregister_producer();
            return;
        }
        let n = (64 << 10).min(self.total - self.sent);
        self.buf.clear();
        for i in self.sent..self.sent + n {
            self.buf.push(self.src[i % self.src.len()]);
        }
        self.sent += n;
        cx.transport().write(&self.buf);
    }
}

#[test]
fn sixty_four_mib_through_a_tls_echo_with_matching_sha256() {
    const TOTAL: usize = 64 << 20;
    let pki = Pki::new();
    let src = Rc::new(pattern(1_048_573));
    let mut want = Sha256::new();
    for i in (0..TOTAL).step_by(src.len()) {
        want.update(&src[..src.len().min(TOTAL - i)]);
    }
    let want = want.finalize().to_vec();
    let reactor = reactor();
    let (slog, sinfo, clog) = (new_log(), info_cell(), new_log());
    let done = stop_after(2);
    let addr = listen_tls(&reactor, echo_server(&slog, &sinfo, &done), &pki.server());
    let got: Rc<RefCell<Option<Vec<u8>>>> = Rc::new(RefCell::new(None));
    let (g, d) = (got.clone(), done.clone());
    let client = factory(move || {
        let (src, g, d) = (src.clone(), g.clone(), d.clone());
        let hasher = Rc::new(RefCell::new((Sha256::new(), 0usize)));
        Rec::new(&clog)
            .on_made(move |cx| {
                let feed = Feed {
                    total: TOTAL,
                    sent: 0,
                    src: src.clone(),
                    buf: Vec::new(),
                };
                cx.transport()
                    .register_producer(Box::new(feed), false)
                    .unwrap();
            })
            .on_data(move |cx, data| {
                let mut h = hasher.borrow_mut();
                h.0.update(data);
                h.1 += data.len();
                if h.1 == TOTAL {
                    *g.borrow_mut() = Some(std::mem::take(&mut h.0).finalize().to_vec());
                    cx.transport().lose_connection();
                }
            })
            .on_lost(move |cx, _| d(cx.reactor()))
            .boxed()
    });
    reactor.connect_tls("127.0.0.1", addr.port(), client, &pki.client("localhost"));
    run_for(&reactor, std::time::Duration::from_secs(60));
    assert_eq!(
        got.borrow().as_deref(),
        Some(&want[..]),
        "SHA-256 of the echo differs"
    );
}

#[test]
fn garbage_instead_of_a_client_hello_is_closed_without_harm_to_others() {
    let pki = Pki::new();
    let reactor = reactor();
    let logs: Rc<RefCell<Vec<Log>>> = Rc::new(RefCell::new(Vec::new()));
    let l = logs.clone();
    let server = factory(move || {
        let log = new_log();
        l.borrow_mut().push(log.clone());
        Rec::new(&log)
            .on_data(|cx, d| cx.transport().write(d))
            .boxed()
    });
    let addr = listen_tls(&reactor, server, &pki.server());
    let cfg = pki.client("localhost");
    let h = client_then_stop(&reactor, move || {
        let mut good = rustls_client(addr, &cfg);
        good.write_all(b"before").unwrap();
        let mut back = [0u8; 6];
        good.read_exact(&mut back).unwrap();
        let mut bad = connect(addr);
        bad.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let (reply, _err) = read_until_closed(&mut bad);
        // At most a TLS alert record (content type 21) before the close.
        assert!(
            reply.is_empty() || reply[0] == 21,
            "unexpected reply {reply:?}"
        );
        good.write_all(b"after!").unwrap();
        good.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"after!");
        let mut fresh = rustls_client(addr, &cfg);
        fresh.write_all(b"fresh!").unwrap();
        fresh.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"fresh!");
    });
    run(&reactor);
    join(h);
    let bad = logs.borrow()[1].clone();
    let text = tls_text(&check_lifecycle(&bad));
    assert!(text.contains("not a TLS handshake"), "{text}");
    assert!(received(&bad).is_empty());
}

#[test]
fn lose_connection_sends_close_notify_even_before_the_handshake_ends() {
    let pki = Pki::new();
    let reactor = reactor();
    let slog = new_log();
    let done = stop_after(1);
    let server = factory(move || {
        let d = done.clone();
        Rec::new(&slog)
            .on_made(|cx| {
                cx.transport().write(b"bye");
                cx.transport().lose_connection();
            })
            .on_lost(move |cx, _| d(cx.reactor()))
            .boxed()
    });
    let addr = listen_tls(&reactor, server, &pki.server());
    let cfg = pki.client("localhost");
    let h = std::thread::spawn(move || {
        let mut tls = rustls_client(addr, &cfg);
        let mut all = Vec::new();
        // A clean close_notify reads as Ok; a bare EOF as UnexpectedEof.
        tls.read_to_end(&mut all).map(|_| all)
    });
    run(&reactor);
    assert_eq!(join(h).expect("a clean TLS close"), b"bye");
}

#[test]
fn eof_without_close_notify_is_reported_as_truncation() {
    let pki = Pki::new();
    let reactor = reactor();
    let (slog, sinfo) = (new_log(), info_cell());
    let addr = listen_tls(
        &reactor,
        echo_server(&slog, &sinfo, &stop_after(1)),
        &pki.server(),
    );
    let cfg = pki.client("localhost");
    let h = std::thread::spawn(move || {
        let mut tls = rustls_client(addr, &cfg);
        tls.write_all(b"cut").unwrap();
        let mut back = [0u8; 3];
        tls.read_exact(&mut back).unwrap();
        tls.sock.shutdown(std::net::Shutdown::Both).unwrap();
    });
    run(&reactor);
    join(h);
    let text = tls_text(&check_lifecycle(&slog));
    assert!(text.contains("without sending close_notify"), "{text}");
}

#[test]
fn one_factory_behind_tls_and_tcp_ports_starts_and_stops_once() {
    struct Counting(Rc<Cell<(u32, u32)>>);
    impl Factory for Counting {
        fn build_protocol(&self, _: &torsion::Address) -> Option<Box<dyn Protocol>> {
            None
        }
        fn start_factory(&self) {
            let (a, b) = self.0.get();
            self.0.set((a + 1, b));
        }
        fn stop_factory(&self) {
            let (a, b) = self.0.get();
            self.0.set((a, b + 1));
        }
    }
    let pki = Pki::new();
    let reactor = reactor();
    let counts = Rc::new(Cell::new((0, 0)));
    let f: Rc<dyn Factory> = Rc::new(Counting(counts.clone()));
    let p1 = reactor.listen_tls(0, f.clone(), &pki.server()).unwrap();
    let p2 = reactor.listen_tls(0, f.clone(), &pki.server()).unwrap();
    let p3 = reactor.listen_tcp(0, f).unwrap();
    assert_eq!(counts.get(), (1, 0));
    p1.stop_listening();
    p3.stop_listening();
    assert_eq!(counts.get(), (1, 0));
    p2.stop_listening();
    assert_eq!(counts.get(), (1, 1));
}
