//! `torsion gen-cert` and `torsion serve echo --tls-cert --tls-key`, checked with Python's
//! `ssl` module as the client.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn gen_cert_then_serve_echo_over_tls() {
    let dir = std::env::temp_dir().join(format!("torsion-gencert-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_torsion"))
        .args(["gen-cert", "--host", "localhost", "--out"])
        .arg(&dir)
        .output()
        .expect("run gen-cert");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    assert!(cert.exists() && key.exists());

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Reaper(
        Command::new(env!("CARGO_BIN_EXE_torsion"))
            .args(["serve", "echo", "--interface", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .stderr(Stdio::null())
            .spawn()
            .expect("start the TLS echo server"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let script = format!(
        "import ssl, socket\n\
         ctx = ssl.create_default_context(cafile={cert:?})\n\
         s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', {port}), timeout=10), server_hostname='localhost')\n\
         s.sendall(b'over tls')\n\
         got = b''\n\
         while len(got) < 8:\n    got += s.recv(100)\n\
         print(got.decode(), s.version())\n",
        cert = cert.to_string_lossy()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 is needed for this test (.ci/run installs it)");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("over tls TLSv1."), "{stdout}");
}
