//! TCP: connections, listening ports ([`ListeningPort`]) and connectors
//! ([`Connector`](crate::Connector)) (Twisted's `twisted.internet.tcp`).

pub(crate) mod connection;
pub(crate) mod connector;
pub(crate) mod port;
pub(crate) mod stream;

pub(crate) use connection::Connection;
pub(crate) use connector::Connecting;
pub use connector::{ConnectorState, TcpConnectOptions};
pub(crate) use port::Listener;
pub use port::{ListeningPort, TcpListenOptions};
