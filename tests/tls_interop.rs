//! TLS interoperability with OpenSSL (`openssl s_client` / `s_server`, Debian's `openssl`
//! package) and Python's `ssl` module: both protocol versions both ways, ALPN and SNI seen
//! from both ends, a wrong CA, STARTTLS, and 64 MiB through an echo with matching SHA-256.

mod common;
mod tls_common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use torsion::tls::{ClientTlsConfig, ServerTlsConfig, TlsVersion, start_tls_server};
use torsion::{Cx, Factory, Protocol, Reactor, Reason};

use common::*;
use tls_common::*;

const VERSIONS: [TlsVersion; 2] = [TlsVersion::Tls12, TlsVersion::Tls13];

fn tool(name: &str) -> Command {
    let probe = Command::new(name)
        .arg(if name == "openssl" {
            "version"
        } else {
            "--version"
        })
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "{name} is needed by this test (Debian: apt-get install -y {})",
        if name == "openssl" {
            "openssl"
        } else {
            "python3"
        }
    );
    Command::new(name)
}

fn flag(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls12 => "-tls1_2",
        TlsVersion::Tls13 => "-tls1_3",
    }
}

fn py_version(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls12 => "TLSv1_2",
        TlsVersion::Tls13 => "TLSv1_3",
    }
}

/// Kills a child process when dropped, so that a failing test leaves none behind.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` with `input` on stdin; returns (success, stdout, stderr).
fn run_with_input(mut cmd: Command, input: &[u8]) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TLS server that echoes one line and closes, noting its layer info and its ending.
fn line_echo(log: &Log, info: &InfoCell) -> Rc<dyn Factory> {
    let (log, info) = (log.clone(), info.clone());
    factory(move || {
        let info = info.clone();
        let mut line = Vec::new();
        Rec::new(&log)
            .on_data(move |cx, d| {
                note_info(cx, &info);
                line.extend_from_slice(d);
                if line.ends_with(b"\n") {
                    cx.transport().write(&line);
                    cx.transport().lose_connection();
                }
            })
            .on_lost(|cx, _| {
                let _ = cx.reactor().stop();
            })
            .boxed()
    })
}

fn s_client(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    name: &str,
    v: TlsVersion,
) -> Command {
    let mut c = tool("openssl");
    c.args([
        "s_client",
        "-connect",
        &addr.to_string(),
        "-verify_return_error",
        "-ign_eof",
    ])
    .args([
        "-servername",
        name,
        "-verify_hostname",
        name,
        "-alpn",
        "h2",
        flag(v),
    ])
    .arg("-CAfile")
    .arg(ca);
    c
}

#[test]
fn openssl_s_client_against_a_torsion_server_in_both_versions_with_alpn() {
    let pki = Pki::new();
    for v in VERSIONS {
        let reactor = reactor();
        let (log, info) = (new_log(), info_cell());
        let server = pki.server().alpn(&[b"h2", b"http/1.1"]);
        let addr = listen_tls(&reactor, line_echo(&log, &info), &server);
        let cmd = s_client(addr, &pki.ca_file, "localhost", v);
        let h = client_then_stop(&reactor, move || run_with_input(cmd, b"ping\n"));
        run(&reactor);
        let (ok, out, err) = join(h);
        assert!(ok, "s_client failed: {err}");
        assert!(out.contains("ping\n"), "no echo: {out}");
        assert!(out.contains("ALPN protocol: h2"), "client-side ALPN: {out}");
        assert!(out.contains(&format!("Protocol  : {}", v.name())), "{out}");
        let info = info.borrow().clone().unwrap();
        assert_eq!(info.version.as_deref(), Some(v.name()));
        assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
        assert!(check_lifecycle(&log).is_clean());
    }
}

#[test]
fn openssl_s_client_gets_the_sni_certificate() {
    let pki = Pki::new();
    let reactor = reactor();
    let (log, info) = (new_log(), info_cell());
    let addr = listen_tls(&reactor, line_echo(&log, &info), &pki.server_with_sni());
    let cmd = s_client(addr, &pki.ca_file, "other.test", TlsVersion::Tls13);
    let h = client_then_stop(&reactor, move || run_with_input(cmd, b"sni\n"));
    run(&reactor);
    let (ok, out, err) = join(h);
    assert!(
        ok,
        "s_client failed (the certificate must be valid for other.test): {err}"
    );
    assert!(
        out.contains("CN=other.test") || out.contains("CN = other.test"),
        "{out}"
    );
    let info = info.borrow().clone().unwrap();
    assert_eq!(info.server_name.as_deref(), Some("other.test"));
}

#[test]
fn openssl_s_client_with_the_wrong_ca_is_refused_with_a_clear_reason() {
    let pki = Pki::new();
    let reactor = reactor();
    let (log, info) = (new_log(), info_cell());
    let addr = listen_tls(&reactor, line_echo(&log, &info), &pki.server());
    let cmd = s_client(addr, &pki.stranger_ca_file, "localhost", TlsVersion::Tls13);
    let h = client_then_stop(&reactor, move || run_with_input(cmd, b"x\n"));
    run(&reactor);
    let (ok, _, err) = join(h);
    assert!(!ok, "s_client must refuse an unknown CA");
    assert!(err.contains("verify"), "{err}");
    let text = tls_text(&check_lifecycle(&log));
    assert!(text.contains("unknown CA"), "{text}");
}

/// `openssl s_server -rev` on a free port, ready to accept one connection.
fn s_server(pki: &Pki, v: TlsVersion, extra: &[&str]) -> (Reap, u16) {
    let port = free_port();
    let mut child = tool("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-naccept",
            "1",
            "-rev",
        ])
        .arg("-cert")
        .arg(&pki.server_cert)
        .arg("-key")
        .arg(&pki.server_key)
        .arg(flag(v))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openssl s_server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("ACCEPT") => break,
            Some(Ok(_)) => {}
            other => panic!("s_server did not start: {other:?}"),
        }
    }
    // Keep draining its output so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (Reap(child), port)
}

/// Connects with `cfg`, sends `hello\n`, expects `olleh\n` (s_server -rev), closes.
fn torsion_client_to(reactor: &Reactor, port: u16, cfg: &ClientTlsConfig) -> (Log, InfoCell) {
    let (log, info) = (new_log(), info_cell());
    let (l, i) = (log.clone(), info.clone());
    let client = factory(move || {
        let i = i.clone();
        let mut got = Vec::new();
        Rec::new(&l)
            .on_made(|cx| cx.transport().write(b"hello\n"))
            .on_data(move |cx, d| {
                got.extend_from_slice(d);
                if got.ends_with(b"\n") {
                    note_info(cx, &i);
                    cx.transport().lose_connection();
                }
            })
            .on_lost(|cx, _| {
                let _ = cx.reactor().stop();
            })
            .boxed()
    });
    reactor.connect_tls("127.0.0.1", port, client, cfg);
    (log, info)
}

#[test]
fn a_torsion_client_against_openssl_s_server_in_both_versions_with_alpn() {
    let pki = Pki::new();
    for v in VERSIONS {
        let (_server, port) = s_server(&pki, v, &["-alpn", "h2"]);
        let reactor = reactor();
        let cfg = pki.client("localhost").alpn(&[b"h2", b"http/1.1"]);
        let (log, info) = torsion_client_to(&reactor, port, &cfg);
        run(&reactor);
        assert!(check_lifecycle(&log).is_clean());
        assert!(received(&log).ends_with(b"olleh\n"), "{:?}", received(&log));
        let info = info.borrow().clone().unwrap();
        assert_eq!(info.version.as_deref(), Some(v.name()));
        assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
    }
}

#[test]
fn a_torsion_client_gets_the_sni_certificate_from_openssl_s_server() {
    let pki = Pki::new();
    let other_cert = pki.other_cert.to_str().unwrap().to_owned();
    let other_key = pki.other_key.to_str().unwrap().to_owned();
    let extra = [
        "-servername",
        "other.test",
        "-cert2",
        &other_cert,
        "-key2",
        &other_key,
    ];
    let (_server, port) = s_server(&pki, TlsVersion::Tls13, &extra);
    let reactor = reactor();
    let (log, info) = torsion_client_to(&reactor, port, &pki.client("other.test"));
    run(&reactor);
    assert!(check_lifecycle(&log).is_clean());
    let info = info.borrow().clone().unwrap();
    assert_eq!(info.peer_certificates[0], pki.der(&pki.other_cert));
}

#[test]
fn a_torsion_client_with_the_wrong_ca_names_the_unknown_issuer() {
    let pki = Pki::new();
    let (_server, port) = s_server(&pki, TlsVersion::Tls13, &[]);
    let reactor = reactor();
    let cfg = ClientTlsConfig::new("localhost")
        .unwrap()
        .ca_file(&pki.stranger_ca_file)
        .unwrap();
    let (log, _) = torsion_client_to(&reactor, port, &cfg);
    run(&reactor);
    let text = tls_text(&check_lifecycle(&log));
    assert!(text.contains("unknown issuer"), "{text}");
}

const PY_CLIENT: &str = r#"
import hashlib, json, socket, ssl, sys
port, ca, version, mib, starttls = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
ctx.set_alpn_protocols(["h2", "http/1.1"])
raw = socket.create_connection(("127.0.0.1", port), timeout=30)
if starttls:
    raw.sendall(b"STARTTLS\r\n")
    ok = b""
    while len(ok) < 4:
        ok += raw.recv(4 - len(ok))
    assert ok == b"OK\r\n", ok
s = ctx.wrap_socket(raw, server_hostname="localhost")
sent, back = hashlib.sha256(), hashlib.sha256()
piece = bytes((i * 7919 + (i >> 10)) & 0xFF for i in range(1 << 20))
for _ in range(mib):
    s.sendall(piece)
    sent.update(piece)
    left = len(piece)
    while left:
        got = s.recv(min(left, 1 << 16))
        assert got, "echo ended early"
        back.update(got)
        left -= len(got)
print(json.dumps({"version": s.version(), "alpn": s.selected_alpn_protocol(),
                  "same": sent.hexdigest() == back.hexdigest()}))
s.unwrap()
"#;

fn echo_until_closed(log: &Log, info: &InfoCell) -> Rc<dyn Factory> {
    let (log, info) = (log.clone(), info.clone());
    factory(move || {
        let info = info.clone();
        Rec::new(&log)
            .on_data(move |cx, d| {
                note_info(cx, &info);
                cx.transport().write(d);
            })
            .on_lost(|cx, _| {
                let _ = cx.reactor().stop();
            })
            .boxed()
    })
}

fn python_client(
    port: u16,
    ca: &std::path::Path,
    v: TlsVersion,
    mib: usize,
    starttls: bool,
) -> Command {
    let mut c = tool("python3");
    c.args(["-c", PY_CLIENT, &port.to_string()]).arg(ca).args([
        py_version(v),
        &mib.to_string(),
        if starttls { "1" } else { "0" },
    ]);
    c
}

fn check_python(out: (bool, String, String), v: TlsVersion) {
    let (ok, out, err) = out;
    assert!(ok, "python client failed: {err}");
    assert!(
        out.contains(&format!("\"version\": \"{}\"", v.name())),
        "{out}"
    );
    assert!(out.contains("\"alpn\": \"h2\""), "{out}");
    assert!(out.contains("\"same\": true"), "{out}");
}

#[test]
fn python_ssl_client_in_both_versions_with_alpn() {
    let pki = Pki::new();
    for v in VERSIONS {
        let reactor = reactor();
        let (log, info) = (new_log(), info_cell());
        let server = pki.server().alpn(&[b"h2"]);
        let addr = listen_tls(&reactor, echo_until_closed(&log, &info), &server);
        let cmd = python_client(addr.port(), &pki.ca_file, v, 1, false);
        let h = client_then_stop(&reactor, move || run_with_input(cmd, b""));
        run(&reactor);
        check_python(join(h), v);
        let info = info.borrow().clone().unwrap();
        assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
        assert!(
            check_lifecycle(&log).is_clean(),
            "python's unwrap sends close_notify"
        );
    }
}

#[test]
fn sixty_four_mib_from_python_through_a_torsion_tls_echo_with_matching_sha256() {
    let pki = Pki::new();
    let reactor = reactor();
    let (log, info) = (new_log(), info_cell());
    let addr = listen_tls(
        &reactor,
        echo_until_closed(&log, &info),
        &pki.server().alpn(&[b"h2"]),
    );
    let cmd = python_client(addr.port(), &pki.ca_file, TlsVersion::Tls13, 64, false);
    let h = client_then_stop(&reactor, move || run_with_input(cmd, b""));
    run_for(&reactor, Duration::from_secs(120));
    check_python(join(h), TlsVersion::Tls13);
}

/// `STARTTLS\r\n` in clear, `OK\r\n` in clear, then an echo over TLS.
struct StartTlsEcho {
    cfg: ServerTlsConfig,
    switched: bool,
    info: InfoCell,
}

impl Protocol for StartTlsEcho {
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        if self.switched {
            note_info(cx, &self.info);
            cx.transport().write(data);
        } else if data == b"STARTTLS\r\n" {
            cx.transport().write(b"OK\r\n");
            start_tls_server(cx.transport(), &self.cfg).expect("start TLS");
            self.switched = true;
        }
    }

    fn connection_lost(&mut self, cx: &mut Cx<'_>, _reason: Reason) {
        let _ = cx.reactor().stop();
    }
}

#[test]
fn starttls_round_trip_with_python() {
    let pki = Pki::new();
    let reactor = reactor();
    let info = info_cell();
    let (cfg, i) = (pki.server().alpn(&[b"h2"]), info.clone());
    let f = factory(move || {
        Box::new(StartTlsEcho {
            cfg: cfg.clone(),
            switched: false,
            info: i.clone(),
        })
    });
    let addr = listen(&reactor, f);
    let cmd = python_client(addr.port(), &pki.ca_file, TlsVersion::Tls13, 1, true);
    let h = client_then_stop(&reactor, move || run_with_input(cmd, b""));
    run(&reactor);
    check_python(join(h), TlsVersion::Tls13);
    assert!(info.borrow().is_some());
}

const PY_SERVER: &str = r#"
import json, socket, ssl, sys
cert, key, version = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
ctx.set_alpn_protocols(["h2"])
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(30)
s = ctx.wrap_socket(conn, server_side=True)
line = b""
while not line.endswith(b"\n"):
    line += s.recv(100)
s.sendall(line[::-1][1:] + b"\n")
print(json.dumps({"version": s.version(), "alpn": s.selected_alpn_protocol()}), flush=True)
s.unwrap()
"#;

#[test]
fn a_torsion_client_against_a_python_ssl_server_in_both_versions() {
    let pki = Pki::new();
    for v in VERSIONS {
        let mut child = tool("python3")
            .args(["-c", PY_SERVER])
            .arg(&pki.server_cert)
            .arg(&pki.server_key)
            .arg(py_version(v))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let _reap = Reap(child);
        let mut port = String::new();
        out.read_line(&mut port).unwrap();
        let port: u16 = port.trim().parse().expect("the python server's port");
        let reactor = reactor();
        let (log, info) =
            torsion_client_to(&reactor, port, &pki.client("localhost").alpn(&[b"h2"]));
        run(&reactor);
        assert!(check_lifecycle(&log).is_clean());
        assert_eq!(received(&log), b"olleh\n");
        let info = info.borrow().clone().unwrap();
        assert_eq!(info.version.as_deref(), Some(v.name()));
        assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
        let mut report = String::new();
        out.read_line(&mut report).unwrap();
        assert!(
            report.contains(&format!("\"version\": \"{}\"", v.name())),
            "{report}"
        );
        assert!(report.contains("\"alpn\": \"h2\""), "{report}");
    }
}
