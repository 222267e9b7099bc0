//! What the TLS integration tests share: a CA made at test time with its certificates in a
//! temporary directory, configurations, TLS listeners on 127.0.0.1, and blocking rustls peers
//! run on threads.

#![allow(dead_code)]

use std::cell::RefCell;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use torsion::layer::LayerInfo;
use torsion::tls::rustls::{self, ClientConnection, ServerConnection, StreamOwned};
use torsion::tls::{ClientTlsConfig, DevCa, ServerTlsConfig};
use torsion::{Cx, Factory, Reactor, Reason, TcpListenOptions};

use super::common::connect;

/// A CA, certificates it issued, and a CA nobody trusts, as PEM files in a directory that is
/// removed when this is dropped.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: DevCa,
    pub ca_file: PathBuf,
    /// For `localhost` and `127.0.0.1`.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// For `other.test`, served by SNI.
    pub other_cert: PathBuf,
    pub other_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that issued none of the above.
    pub stranger_ca_file: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "torsion-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = DevCa::new("torsion test CA").unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ca_file = write("ca.pem", &ca.cert_pem());
        let (c, k) = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        let (server_cert, server_key) = (write("server.pem", &c), write("server.key", &k));
        let (c, k) = ca.issue_server(&["other.test"]).unwrap();
        let (other_cert, other_key) = (write("other.pem", &c), write("other.key", &k));
        let (c, k) = ca.issue_client("alice").unwrap();
        let (client_cert, client_key) = (write("client.pem", &c), write("client.key", &k));
        let stranger = DevCa::new("someone else's CA").unwrap();
        let stranger_ca_file = write("stranger.pem", &stranger.cert_pem());
        Pki {
            dir,
            ca,
            ca_file,
            server_cert,
            server_key,
            other_cert,
            other_key,
            client_cert,
            client_key,
            stranger_ca_file,
        }
    }

    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::from_pem_files(&self.server_cert, &self.server_key).unwrap()
    }

    /// The server configuration with `other.test` served by SNI.
    pub fn server_with_sni(&self) -> ServerTlsConfig {
        self.server()
            .sni("other.test", &self.other_cert, &self.other_key)
            .unwrap()
    }

    pub fn client(&self, name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new(name)
            .unwrap()
            .ca_file(&self.ca_file)
            .unwrap()
    }

    pub fn der(&self, pem_file: &Path) -> Vec<u8> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_file(pem_file).unwrap().to_vec()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Listens with TLS on 127.0.0.1 on a free port.
pub fn listen_tls(
    reactor: &Reactor,
    factory: Rc<dyn Factory>,
    cfg: &ServerTlsConfig,
) -> SocketAddr {
    reactor
        .listen_tls_with(
            0,
            factory,
            cfg,
            TcpListenOptions {
                interface: "127.0.0.1".into(),
                ..Default::default()
            },
        )
        .expect("listen with TLS on 127.0.0.1:0")
        .host()
        .socket_addr()
        .unwrap()
}

/// The first `layer_info` a connection reported, once its handshake completed.
pub type InfoCell = Rc<RefCell<Option<LayerInfo>>>;

pub fn info_cell() -> InfoCell {
    Rc::new(RefCell::new(None))
}

/// Records the layer's info into `cell` if it is there and the cell is empty.
pub fn note_info(cx: &mut Cx<'_>, cell: &InfoCell) {
    if cell.borrow().is_none() {
        if let Some(info) = cx.transport().layer_info() {
            *cell.borrow_mut() = Some(info);
        }
    }
}

/// The TLS failure's text, or a panic naming the reason it was instead.
pub fn tls_text(reason: &Reason) -> String {
    match reason {
        Reason::Tls(e) => e.to_string(),
        other => panic!("expected a TLS failure, got: {other}"),
    }
}

/// A blocking rustls client over a fresh TCP connection to `addr`.
pub fn rustls_client(
    addr: SocketAddr,
    cfg: &ClientTlsConfig,
) -> StreamOwned<ClientConnection, TcpStream> {
    let name = rustls::pki_types::ServerName::try_from(cfg.server_name().to_owned()).unwrap();
    let conn = ClientConnection::new(cfg.rustls_config().clone(), name).unwrap();
    StreamOwned::new(conn, connect(addr))
}

/// Wraps an already connected stream (after a clear-text STARTTLS exchange).
pub fn rustls_client_over(
    sock: TcpStream,
    cfg: &ClientTlsConfig,
) -> StreamOwned<ClientConnection, TcpStream> {
    let name = rustls::pki_types::ServerName::try_from(cfg.server_name().to_owned()).unwrap();
    let conn = ClientConnection::new(cfg.rustls_config().clone(), name).unwrap();
    StreamOwned::new(conn, sock)
}

/// A blocking rustls server for one accepted socket.
pub fn rustls_server(
    sock: TcpStream,
    cfg: &ServerTlsConfig,
) -> StreamOwned<ServerConnection, TcpStream> {
    let conn = ServerConnection::new(Arc::clone(cfg.rustls_config())).unwrap();
    StreamOwned::new(conn, sock)
}
