//! Endpoint addresses, as Twisted's `IPv4Address` / `IPv6Address`.

use std::fmt;
use std::net::SocketAddr;

/// The address of one end of a connection or of a listening port.
///
/// ```
/// use torsion::Address;
/// let a = Address::Tcp("127.0.0.1:8000".parse().unwrap());
/// assert_eq!(a.to_string(), "tcp:127.0.0.1:8000");
/// assert_eq!(a.port(), Some(8000));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A TCP address, IPv4 or IPv6.
    Tcp(SocketAddr),
    /// The address could not be determined (the socket is gone).
    Unknown,
}

impl Address {
    /// The socket address of a TCP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(a) => Some(*a),
            _ => None,
        }
    }

    /// The port of a TCP address.
    pub fn port(&self) -> Option<u16> {
        self.socket_addr().map(|a| a.port())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "tcp:{a}"),
            Address::Unknown => f.write_str("unknown"),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}
