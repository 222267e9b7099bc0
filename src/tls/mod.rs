//! TLS over rustls (Twisted's `twisted.internet.ssl` and `TLSMemoryBIOProtocol`), with the
//! ring provider.
//!
//! | Twisted | torsion |
//! | --- | --- |
//! | `reactor.listenSSL(port, factory, contextFactory)` | [`Reactor::listen_tls`](crate::Reactor::listen_tls) |
//! | `reactor.connectSSL(host, port, factory, contextFactory)` | [`Reactor::connect_tls`](crate::Reactor::connect_tls) |
//! | `transport.startTLS(contextFactory)` | [`start_tls_server`], [`start_tls_client`] |
//! | `CertificateOptions` / `optionsForClientTLS` | [`ServerTlsConfig`], [`ClientTlsConfig`] |
//! | `TLSMemoryBIOProtocol` | [`TlsLayer`] |
//!
//! A [`TlsLayer`] is a [`StreamLayer`](crate::layer::StreamLayer): it holds no socket, so it
//! works over any stream transport and is tested by pumping a client and a server layer into
//! each other in memory. Handshake failures reach `connection_lost` as
//! [`Reason::Tls`](crate::Reason::Tls) with a sentence naming what failed (an unknown CA, no
//! common protocol version, no ALPN protocol in common, bytes that are not TLS at all, ...).
//!
//! ```no_run
//! use std::rc::Rc;
//! use torsion::{factory::from_fn, Cx, Protocol, Reactor, Reason};
//! use torsion::tls::ServerTlsConfig;
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
//!         cx.transport().write(data);
//!     }
//!     fn connection_lost(&mut self, _cx: &mut Cx<'_>, reason: Reason) {
//!         if let Reason::Tls(e) = reason {
//!             eprintln!("TLS failed: {e}");
//!         }
//!     }
//! }
//!
//! let config = ServerTlsConfig::from_pem_files("cert.pem", "key.pem")?
//!     .alpn(&[b"echo"]);
//! let reactor = Reactor::new()?;
//! reactor.listen_tls(8443, Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>))), &config)?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cert;
mod client;
mod config;
mod endpoints;
mod error;
mod layer;
mod pem;
mod server;

pub use cert::{DevCa, generate_self_signed, write_self_signed};
pub use client::ClientTlsConfig;
pub use config::{ClientAuth, TlsVersion};
pub use endpoints::{start_tls_client, start_tls_server};
pub use error::TlsConfigError;
pub use layer::{DEFAULT_BUFFER_LIMIT, TlsLayer};
pub use server::ServerTlsConfig;

/// The rustls crate this module is built on, for [`TlsLayer::server`] and
/// [`TlsLayer::client`] with configurations made by hand.
pub use rustls;

#[cfg(test)]
mod tests;
