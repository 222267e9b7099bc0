//! SIGINT / SIGTERM delivered to the loop through a self-pipe, so that `run()` stops
//! gracefully, as Twisted's `installSignalHandlers` does.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;

use mio::{Interest, Registry, Token};
use signal_hook::SigId;

pub(crate) struct Signals {
    reader: mio::net::UnixStream,
    ids: Vec<SigId>,
}

impl Signals {
    pub(crate) fn install(registry: &Registry, token: Token) -> io::Result<Signals> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let mut reader = mio::net::UnixStream::from_std(reader);
        registry.register(&mut reader, token, Interest::READABLE)?;
        let mut ids = Vec::new();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            ids.push(signal_hook::low_level::pipe::register(
                sig,
                writer.try_clone()?,
            )?);
        }
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
        let _ = registry.deregister(&mut self.reader);
    }
}
