//! Endpoint addresses, as Twisted's `IPv4Address` / `IPv6Address`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// A UNIX socket address: a path, a Linux abstract name written `@name`, or `None` for
    /// an unnamed socket (the usual client side).
    Unix(Option<PathBuf>),
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

    pub(crate) fn from_unix(a: &std::os::unix::net::SocketAddr) -> Address {
        use std::os::linux::net::SocketAddrExt;
        if let Some(p) = a.as_pathname() {
            Address::Unix(Some(p.to_path_buf()))
        } else if let Some(name) = a.as_abstract_name() {
            let mut s = String::from("@");
            s.push_str(&String::from_utf8_lossy(name));
            Address::Unix(Some(PathBuf::from(s)))
        } else {
            Address::Unix(None)
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
            Address::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            Address::Unix(None) => f.write_str("unix:(unnamed)"),
            Address::Unknown => f.write_str("unknown"),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}
