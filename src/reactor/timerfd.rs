//! A `timerfd` for the last sub-millisecond stretch before a deadline.
//!
//! `epoll_wait` sleeps in whole milliseconds. Sleeping the whole milliseconds first and then
//! spinning the rest would burn a core whenever deadlines are dense; arming a timerfd for the
//! exact remainder keeps deadlines to the microsecond at the cost of one `timerfd_settime`
//! per deadline that is reached this way.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

pub(crate) struct TimerFd {
    fd: OwnedFd,
    /// The deadline (reactor nanoseconds) it is armed for; 0 when idle.
    armed: Cell<u64>,
}

impl TimerFd {
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<TimerFd> {
        // SAFETY: plain syscall; the result is checked before it is owned.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(TimerFd {
            fd,
            armed: Cell::new(0),
        })
    }

    /// Arms the timer to fire after `delay`, for deadline `deadline` (used to skip re-arming
    /// for the same deadline).
    pub(crate) fn arm(&self, deadline: u64, delay: Duration) -> io::Result<()> {
        if self.armed.get() == deadline {
            return Ok(());
        }
        // A zero it_value would disarm the timer; one nanosecond fires at once.
        let nanos = delay.as_nanos().clamp(1, 999_999_999) as libc::c_long;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: 0,
                tv_nsec: nanos,
            },
        };
        // SAFETY: `spec` is a valid itimerspec and the descriptor is ours.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed.set(deadline);
        Ok(())
    }

    /// Consumes an expiry.
    pub(crate) fn fired(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a local buffer from our own descriptor.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        self.armed.set(0);
    }
}
