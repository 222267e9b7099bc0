//! Arbitrary bytes from a would-be client, fed to a TLS server layer in chunks whose sizes
//! the input picks (so records split anywhere): no panic, no plaintext out of a handshake
//! that never completed.
//!
//! `cargo +nightly fuzz run tls_server` (or `cargo check` on stable to type-check it).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use torsion::layer::StreamLayer;
use torsion::tls::{ServerTlsConfig, generate_self_signed};

fn config() -> &'static ServerTlsConfig {
    static CONFIG: OnceLock<ServerTlsConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let (cert, key) = generate_self_signed(&["localhost"]).expect("generate a certificate");
        ServerTlsConfig::from_pem(cert.as_bytes(), key.as_bytes())
            .expect("a server configuration")
            .alpn(&[b"h2", b"http/1.1"])
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split).max(1) * 8;
    let mut layer = config().layer().expect("a server layer");
    let (mut plain, mut wire) = (Vec::new(), Vec::new());
    for piece in rest.chunks(chunk) {
        if layer.read_wire(piece, &mut plain, &mut wire).is_err() {
            break;
        }
    }
    let _ = layer.write_plain(b"reply", &mut wire);
    layer.close(&mut wire);
    let _ = layer.wire_closed();
    let _ = layer.info();
    assert!(plain.is_empty() || layer.info().is_some());
});
