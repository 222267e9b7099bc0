//! SIGINT / SIGTERM delivered to the loop through a self-pipe, so that `run()` stops
//! gracefully, as Twisted's `installSignalHandlers` does.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use mio::{Interest, Registry, Token};
use signal_hook::SigId;

const STOP_SIGNALS: [i32; 2] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

/// Reactors currently turning signals into `stop`.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Once a handler is installed the OS no longer applies the default action, even after it is
/// unregistered. This flag, true while no reactor is running with signal handling, makes a
/// process-wide action emulate the default (terminate) again, so Ctrl-C still works after
/// `run` returns.
fn idle_default() -> io::Result<&'static Arc<AtomicBool>> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    if let Some(f) = FLAG.get() {
        return Ok(f);
    }
    let flag = Arc::new(AtomicBool::new(true));
    for sig in STOP_SIGNALS {
        signal_hook::flag::register_conditional_default(sig, flag.clone())?;
    }
    Ok(FLAG.get_or_init(|| flag))
}

pub(crate) struct Signals {
    reader: mio::net::UnixStream,
    ids: Vec<SigId>,
}

impl Signals {
    pub(crate) fn install(registry: &Registry, token: Token) -> io::Result<Signals> {
        let idle = idle_default()?;
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let mut reader = mio::net::UnixStream::from_std(reader);
        registry.register(&mut reader, token, Interest::READABLE)?;
        let mut ids = Vec::new();
        for sig in STOP_SIGNALS {
            ids.push(signal_hook::low_level::pipe::register(
                sig,
                writer.try_clone()?,
            )?);
        }
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        idle.store(false, Ordering::SeqCst);
        Ok(Signals { reader, ids })
    }

    /// Empties the pipe; returns true if a signal arrived.
    pub(crate) fn drain(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let mut got = false;
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return got,
                Ok(_) => got = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return got,
            }
        }
    }

    pub(crate) fn uninstall(mut self, registry: &Registry) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        if ACTIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Ok(idle) = idle_default() {
                idle.store(true, Ordering::SeqCst);
            }
        }
        let _ = registry.deregister(&mut self.reader);
    }
}
