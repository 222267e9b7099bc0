//! The socket under a stream connection: TCP or UNIX, behind one small enum so the
//! connection code is written once.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::Address;

pub(crate) enum Stream {
    Tcp(TcpStream),
    #[allow(dead_code)] // UNIX listeners and connectors construct it.
    Unix(UnixStream),
}

impl Stream {
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    /// Looks at the next byte without taking it: `Ok(0)` means the peer closed and nothing
    /// is left unread.
    pub(crate) fn peek_eof(&self) -> io::Result<usize> {
        let mut probe = 0u8;
        // SAFETY: receives at most one byte into a local; the descriptor is ours.
        let n = unsafe {
            libc::recv(
                self.as_fd().as_raw_fd(),
                (&mut probe as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        }
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    pub(crate) fn local_address(&self) -> Address {
        match self {
            Stream::Tcp(s) => s.local_addr().map_or(Address::Unknown, Address::Tcp),
            Stream::Unix(s) => s
                .local_addr()
                .map_or(Address::Unknown, |a| Address::from_unix(&a)),
        }
    }

    pub(crate) fn tcp(&self) -> io::Result<&TcpStream> {
        match self {
            Stream::Tcp(s) => Ok(s),
            Stream::Unix(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

/// An IPv4 peer address packed in 8 bytes (`1 << 63 | ip << 16 | port`), so that the common
/// case costs an idle connection no allocation; 0 means "kept elsewhere".
pub(crate) fn pack_v4(addr: &Address) -> u64 {
    match addr {
        Address::Tcp(SocketAddr::V4(a)) => {
            1 << 63 | (u64::from(a.ip().to_bits()) << 16) | u64::from(a.port())
        }
        _ => 0,
    }
}

pub(crate) fn unpack_v4(packed: u64) -> Option<Address> {
    (packed >> 63 == 1).then(|| {
        let ip = std::net::Ipv4Addr::from_bits((packed >> 16) as u32);
        Address::Tcp(SocketAddr::from((ip, packed as u16)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_peers_pack_and_unpack() {
        let a = Address::Tcp("10.1.2.3:65535".parse().unwrap());
        assert_eq!(unpack_v4(pack_v4(&a)), Some(a));
        let zero = Address::Tcp("0.0.0.0:0".parse().unwrap());
        assert_eq!(unpack_v4(pack_v4(&zero)), Some(zero));
        let v6 = Address::Tcp("[::1]:80".parse().unwrap());
        assert_eq!(pack_v4(&v6), 0);
        assert_eq!(unpack_v4(0), None);
    }
}
