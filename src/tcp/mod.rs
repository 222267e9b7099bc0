//! Stream sockets, TCP and UNIX: connections, listening ports ([`ListeningPort`]) and
//! connectors ([`Connector`](crate::Connector)) (Twisted's `twisted.internet.tcp`; the UNIX
//! entry points are in [`crate::unix`]).

pub(crate) mod connection;
pub(crate) mod connector;
pub(crate) mod port;
pub(crate) mod stream;

pub(crate) use connection::Connection;
pub(crate) use connector::Connecting;
pub use connector::{ConnectorState, Destination, TcpConnectOptions};
pub(crate) use port::Listener;
pub use port::{ListeningPort, TcpListenOptions};
