//! [`FileSender`]: stream a file (or any reader) to a transport as a pull producer
//! (Twisted's `twisted.protocols.basic.FileSender`).
//!
//! The sender writes one 16 KiB chunk each time the transport's buffer drains, so memory stays
//! flat whatever the file size and however slow the reader. Reads are plain blocking reads
//! on the reactor thread, as in Twisted: fine for local files, which the page cache serves.

use std::io::Read;

use crate::defer::{Deferred, Failure};
use crate::{Cx, Producer, Transport};

/// Bytes read and written per request (Twisted's `CHUNK_SIZE`, 2**14).
pub const CHUNK_SIZE: usize = 16 * 1024;

type Transform = Box<dyn FnMut(&[u8]) -> Vec<u8>>;

/// A pull producer that sends everything a reader yields, then fires its Deferred.
///
/// ```
/// use torsion::{Cx, Protocol};
/// use torsion::protocols::file_sender::FileSender;
///
/// /// Sends a file to each client, then closes.
/// struct Serve(std::path::PathBuf);
/// impl Protocol for Serve {
///     fn connection_made(&mut self, cx: &mut Cx<'_>) {
///         let Ok(file) = std::fs::File::open(&self.0) else {
///             cx.transport().lose_connection();
///             return;
///         };
///         let handle = cx.handle();
///         FileSender::begin_file_transfer(cx.transport(), file, None)
///             .on_result(move |_| handle.lose_connection());
///     }
/// }
/// ```
pub struct FileSender {
    reader: Box<dyn Read>,
    transform: Option<Transform>,
    buf: Vec<u8>,
    last: Option<u8>,
    done: Deferred<Option<u8>>,
}

impl FileSender {
    /// Registers a sender for `reader` on `consumer`. The Deferred fires with the last byte
    /// sent (`None` for an empty input) once everything is written, or fails if reading
    /// fails or the consumer stops it. `transform` is applied to each chunk before writing.
    pub fn begin_file_transfer(
        consumer: &mut dyn Transport,
        reader: impl Read + 'static,
        transform: Option<Transform>,
    ) -> Deferred<Option<u8>> {
        let done = Deferred::new();
        let sender = FileSender {
            reader: Box::new(reader),
            transform,
            buf: vec![0; CHUNK_SIZE],
            last: None,
            done: done.clone(),
        };
        if consumer.register_producer(Box::new(sender), false).is_err() {
            let _ = done.errback(Failure::msg("the consumer cannot take a producer"));
        }
        done
    }
}

impl Producer for FileSender {
    fn resume_producing(&mut self, cx: &mut Cx<'_>) {
        let n = loop {
            match self.reader.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    cx.transport().unregister_producer();
                    let _ = self.done.errback(Failure::new(e));
                    return;
                }
            }
        };
        if n == 0 {
            cx.transport().unregister_producer();
            let _ = self.done.callback(self.last);
            return;
        }
        let chunk = &self.buf[..n];
        match self.transform.as_mut() {
            Some(t) => {
                let out = t(chunk);
                if let Some(&b) = out.last() {
                    self.last = Some(b);
                }
                cx.transport().write(&out);
            }
            None => {
                self.last = chunk.last().copied();
                cx.transport().write(chunk);
            }
        }
    }

    fn stop_producing(&mut self, _cx: &mut Cx<'_>) {
        let _ = self
            .done
            .errback(Failure::msg("Consumer asked us to stop producing"));
    }
}
