//! The socket under a stream connection: TCP or UNIX, behind one small enum so the
//! connection code is written once.

use std::io::{self, IoSlice, Read, Write};
use std::mem::{MaybeUninit, size_of};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::{Address, Credentials};

/// Descriptors one `recvmsg(2)` can take (one SCM_RIGHTS message); a sender that packs more
/// into one message loses the rest (the kernel closes them and sets `MSG_CTRUNC`).
const MAX_FDS_PER_READ: usize = 16;

pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Reads into `buf` (`Ok(0)` is end of stream); on a UNIX stream it uses `recvmsg(2)` and appends the
    /// descriptors that came with the bytes (SCM_RIGHTS, close-on-exec) to `fds`. The kernel
    /// never joins bytes that carry descriptors with later bytes, so the descriptors belong
    /// with the end of what this read returns. TCP keeps plain `read(2)`.
    pub(crate) fn read_with_fds(
        &mut self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
    ) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => recv_with_fds(s.as_raw_fd(), buf, fds),
        }
    }

    /// Sends `data` (at least one byte) with a copy of `fd` attached (SCM_RIGHTS). Returns how
    /// many bytes went; the descriptor went with them if that is more than 0.
    pub(crate) fn send_with_fd(&self, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
        match self {
            Stream::Tcp(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "file descriptors can only be passed over UNIX sockets",
            )),
            Stream::Unix(s) => send_with_fd(s.as_raw_fd(), data, fd.as_raw_fd()),
        }
    }

    /// The pid, uid and gid of the process at the other end (SO_PEERCRED), as they were
    /// when the connection was made.
    pub(crate) fn peer_credentials(&self) -> io::Result<Credentials> {
        match self {
            Stream::Tcp(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "peer credentials exist only for UNIX sockets",
            )),
            Stream::Unix(s) => peer_credentials(s.as_raw_fd()),
        }
    }

    /// The address of the other end.
    pub(crate) fn peer_address(&self) -> io::Result<Address> {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(Address::Tcp),
            Stream::Unix(s) => s.peer_addr().map(|a| Address::from_unix(&a)),
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

/// Room for the control message of one `recvmsg` with up to [`MAX_FDS_PER_READ`]
/// descriptors, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([MaybeUninit<u8>; 128]);

// SAFETY: CMSG_SPACE is arithmetic on its argument.
const _: () = assert!(
    unsafe { libc::CMSG_SPACE((MAX_FDS_PER_READ * size_of::<RawFd>()) as u32) } as usize
        <= size_of::<CmsgBuf>()
);

fn recv_with_fds(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut cmsg = CmsgBuf([MaybeUninit::uninit(); 128]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid (null name, no iovecs); the fields set below point at
    // `iov` and `cmsg`, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<CmsgBuf>() as _;
    // SAFETY: `msg` describes writable memory of the stated sizes.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if msg.msg_controllen > 0 {
        // SAFETY: the kernel filled `msg_controllen` bytes of `cmsg` with well-formed control
        // messages; the CMSG_* macros walk them within those bounds.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c);
                    let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                    for i in 0..len / size_of::<RawFd>() {
                        let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        fds.push(OwnedFd::from_raw_fd(raw));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        tracing::warn!(
            "the peer passed more than {MAX_FDS_PER_READ} file descriptors at once; the kernel closed the rest"
        );
    }
    Ok(n as usize)
}

fn send_with_fd(sock: RawFd, data: &[u8], fd: RawFd) -> io::Result<usize> {
    let mut cmsg = CmsgBuf([MaybeUninit::new(0); 128]);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    };
    // SAFETY: as in `recv_with_fds`; the kernel only reads through `msg_iov` here.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE / CMSG_LEN are pure arithmetic; the buffer holds one descriptor's
    // control message (checked above), which is written fully before the call.
    let n = unsafe {
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn peer_credentials(fd: RawFd) -> io::Result<Credentials> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Credentials {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
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
