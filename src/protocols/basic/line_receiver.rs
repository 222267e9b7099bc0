//! [`LineReceiver`]: a [`Protocol`] that cuts its input into lines (or passes it on raw) and
//! calls a [`LineHandler`].

use std::ops::{Deref, DerefMut};

use super::line_parser::{Kind, LineParser};
use super::splitter::Span;
use crate::{Cx, Protocol, Reason};

/// What a [`LineReceiver`] calls back (the methods a Twisted `LineReceiver` subclass
/// overrides). Only [`LineHandler::line_received`] is required.
///
/// ```
/// use torsion::protocols::basic::{LineCx, LineHandler, LineReceiver};
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Protocol, Reactor};
///
/// /// Answers every line with its length.
/// struct Lengths;
/// impl LineHandler for Lengths {
///     fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
///         cx.send_line(line.len().to_string().as_bytes());
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// let mut p = LineReceiver::new(Lengths);
/// p.data_received(&mut Cx::new(&mut t, &reactor), b"hello\r\nto you\r\nand");
/// assert_eq!(t.value(), b"5\r\n6\r\n");
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait LineHandler {
    /// The connection is up (Twisted's `connectionMade`).
    fn connection_made(&mut self, cx: &mut LineCx<'_, '_>) {
        let _ = cx;
    }

    /// A complete line arrived, without its delimiter. The slice borrows the receiver's
    /// buffer or the read buffer: copy what must outlive the call.
    fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]);

    /// Bytes arrived in raw mode (see [`LineCx::set_raw_mode`]). The default drops them.
    fn raw_data_received(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
        let _ = (cx, data);
    }

    /// A line longer than the maximum arrived, or an unterminated one grew too long.
    ///
    /// `data` is every byte that was pending, as in Twisted: the long line, its delimiter
    /// and whatever followed it (which may be more lines), or the whole unterminated buffer.
    /// The buffer is empty afterwards; bytes handed back with [`LineCx::set_line_mode`] are
    /// parsed at once, so hand back less than `data` (or raise the limit first): all of it,
    /// unchanged, would be exceeded again and again. The default closes the connection
    /// gracefully.
    fn line_length_exceeded(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
        let _ = data;
        cx.transport().lose_connection();
    }

    /// The connection is gone (Twisted's `connectionLost`).
    fn connection_lost(&mut self, cx: &mut LineCx<'_, '_>, reason: Reason) {
        let _ = (cx, reason);
    }
}

/// Where the data of the event just delivered ended.
#[derive(Clone, Copy)]
enum Ended {
    /// At this position of the chunk being parsed.
    InChunk(usize),
    /// In the receiver's buffer.
    InBuffer,
    /// Not an event of the input (connection made or lost).
    Outside,
}

/// Changes a handler asked for during a callback, applied when it returns (a callback cannot
/// touch the buffer it is reading from).
#[derive(Debug, Default)]
struct Control {
    paused: bool,
    mode: Option<bool>,
    cleared: bool,
    /// Bytes at the end of the current event's data handed back with `set_line_mode`.
    rewind: usize,
    extra: Vec<u8>,
    delimiter: Option<Vec<u8>>,
    max_length: Option<usize>,
}

/// The context of a [`LineHandler`] callback: the connection's [`Cx`] (through `Deref`, so
/// `cx.transport()`, `cx.reactor()` and `cx.handle()` work) plus the receiver's own controls.
///
/// Mode switches, buffer changes and new limits take effect for the very next byte: the rest
/// of the chunk being parsed is delivered under them within the same `data_received`.
pub struct LineCx<'a, 'b> {
    cx: &'a mut Cx<'b>,
    parser: &'a LineParser,
    /// The unparsed rest of the chunk being parsed.
    rest: &'a [u8],
    /// The data of the event being delivered.
    event: &'a [u8],
    /// Whether the event consumed every pending byte (raw data, an exceeded line).
    rewindable: bool,
    ctl: &'a mut Control,
}

impl<'b> Deref for LineCx<'_, 'b> {
    type Target = Cx<'b>;
    fn deref(&self) -> &Cx<'b> {
        self.cx
    }
}

impl<'b> DerefMut for LineCx<'_, 'b> {
    fn deref_mut(&mut self) -> &mut Cx<'b> {
        self.cx
    }
}

impl LineCx<'_, '_> {
    /// Sends `line` followed by the delimiter (Twisted's `sendLine`), in one vectored write.
    pub fn send_line(&mut self, line: &[u8]) {
        let delimiter = match &self.ctl.delimiter {
            Some(d) => d.as_slice(),
            None => self.parser.delimiter(),
        };
        self.cx.transport().write_vectored(&[line, delimiter]);
    }

    /// Delivers what follows through [`LineHandler::raw_data_received`], starting with the
    /// rest of the current chunk.
    ///
    /// ```
    /// use torsion::protocols::basic::{LineCx, LineHandler, LineReceiver};
    /// # use torsion::{testing::StringTransport, Cx, Protocol, Reactor};
    ///
    /// #[derive(Default)]
    /// struct Log(Vec<String>);
    /// impl LineHandler for Log {
    ///     fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
    ///         self.0.push(format!("line {}", String::from_utf8_lossy(line)));
    ///         if line == b"RAW" {
    ///             cx.set_raw_mode();
    ///         }
    ///     }
    ///     fn raw_data_received(&mut self, _: &mut LineCx<'_, '_>, data: &[u8]) {
    ///         self.0.push(format!("raw {:?}", String::from_utf8_lossy(data)));
    ///     }
    /// }
    ///
    /// # let reactor = Reactor::new()?;
    /// # let mut t = StringTransport::new();
    /// let mut p = LineReceiver::new(Log::default());
    /// p.data_received(&mut Cx::new(&mut t, &reactor), b"a\r\nRAW\r\nrest\r\nof data");
    /// assert_eq!(p.handler().0, ["line a", "line RAW", r#"raw "rest\r\nof data""#]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_raw_mode(&mut self) {
        self.ctl.mode = Some(false);
    }

    /// Goes back to line mode, and parses `extra` as if it had been received after everything
    /// buffered (Twisted's `setLineMode(extra)`; from `line_received`, pass nothing).
    ///
    /// From [`LineHandler::raw_data_received`], hand back the part of `data` you did not use:
    /// when `extra` is a tail of the slice you were given, it is not even copied.
    ///
    /// ```
    /// use torsion::protocols::basic::{LineCx, LineHandler, LineReceiver};
    /// # use torsion::{testing::StringTransport, Cx, Protocol, Reactor};
    ///
    /// /// `SIZE n` announces n raw bytes.
    /// #[derive(Default)]
    /// struct Framed { want: usize, got: Vec<Vec<u8>> }
    /// impl LineHandler for Framed {
    ///     fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
    ///         if let Some(n) = line.strip_prefix(b"SIZE ") {
    ///             self.want = std::str::from_utf8(n).unwrap().parse().unwrap();
    ///             self.got.push(Vec::new());
    ///             cx.set_raw_mode();
    ///         } else {
    ///             self.got.push(line.to_vec());
    ///         }
    ///     }
    ///     fn raw_data_received(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
    ///         let (body, rest) = data.split_at(self.want.min(data.len()));
    ///         self.got.last_mut().unwrap().extend_from_slice(body);
    ///         self.want -= body.len();
    ///         if self.want == 0 {
    ///             cx.set_line_mode(rest);
    ///         }
    ///     }
    /// }
    ///
    /// # let reactor = Reactor::new()?;
    /// # let mut t = StringTransport::new();
    /// let mut p = LineReceiver::new(Framed::default());
    /// p.data_received(&mut Cx::new(&mut t, &reactor), b"SIZE 4\r\n\r\n\r\nnext\r\n");
    /// assert_eq!(p.handler().got, [&b"\r\n\r\n"[..], b"next"]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_line_mode(&mut self, extra: &[u8]) {
        self.ctl.mode = Some(true);
        if extra.is_empty() {
            return;
        }
        let ctl = &mut *self.ctl;
        let tail_of_event = extra.len() <= self.event.len()
            && std::ptr::eq(
                extra.as_ptr(),
                self.event[self.event.len() - extra.len()..].as_ptr(),
            );
        if self.rewindable && tail_of_event && ctl.rewind == 0 && ctl.extra.is_empty() {
            // The event consumed everything, so its own tail is exactly what comes next.
            ctl.rewind = extra.len();
        } else {
            ctl.extra.extend_from_slice(extra);
        }
    }

    /// True in line mode, false in raw mode.
    pub fn is_line_mode(&self) -> bool {
        self.ctl.mode.unwrap_or(self.parser.is_line_mode())
    }

    /// Drops everything received and not parsed yet, and returns it (Twisted's
    /// `clearLineBuffer`). Lines still pending in the current chunk are not delivered.
    ///
    /// ```
    /// use torsion::protocols::basic::{LineCx, LineHandler, LineReceiver};
    /// # use torsion::{testing::StringTransport, Cx, Protocol, Reactor};
    ///
    /// #[derive(Default)]
    /// struct Clearing { line: Vec<u8>, rest: Vec<u8> }
    /// impl LineHandler for Clearing {
    ///     fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
    ///         self.line = line.to_vec();
    ///         self.rest = cx.clear_line_buffer();
    ///     }
    /// }
    ///
    /// # let reactor = Reactor::new()?;
    /// # let mut t = StringTransport::new();
    /// let mut p = LineReceiver::new(Clearing::default());
    /// p.data_received(&mut Cx::new(&mut t, &reactor), b"foo\r\nbar\r\nbaz");
    /// assert_eq!(p.handler().line, b"foo");
    /// assert_eq!(p.handler().rest, b"bar\r\nbaz");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn clear_line_buffer(&mut self) -> Vec<u8> {
        let ctl = &mut *self.ctl;
        let mut out = Vec::new();
        if !ctl.cleared {
            out.extend_from_slice(self.parser.pending());
            out.extend_from_slice(self.rest);
        }
        out.extend_from_slice(&self.event[self.event.len() - ctl.rewind..]);
        out.extend_from_slice(&ctl.extra);
        ctl.cleared = true;
        ctl.rewind = 0;
        ctl.extra.clear();
        out
    }

    /// Stops delivering at once, mid-chunk, and pauses the transport; what arrives meanwhile
    /// is buffered (Twisted's `pauseProducing`).
    pub fn pause_producing(&mut self) {
        self.ctl.paused = true;
        self.cx.transport().pause_producing();
    }

    /// Undoes [`LineCx::pause_producing`]: delivery goes on with the rest of the chunk.
    pub fn resume_producing(&mut self) {
        self.ctl.paused = false;
        self.cx.transport().resume_producing();
    }

    /// Stops delivering and stops the transport for good (Twisted's `stopProducing`).
    pub fn stop_producing(&mut self) {
        self.ctl.paused = true;
        self.cx.transport().stop_producing();
    }

    /// True while delivery is paused.
    pub fn is_paused(&self) -> bool {
        self.ctl.paused
    }

    /// The line delimiter.
    pub fn delimiter(&self) -> &[u8] {
        match &self.ctl.delimiter {
            Some(d) => d,
            None => self.parser.delimiter(),
        }
    }

    /// Changes the delimiter, for the rest of the chunk too.
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn set_delimiter(&mut self, delimiter: &[u8]) {
        assert!(!delimiter.is_empty(), "a line delimiter cannot be empty");
        self.ctl.delimiter = Some(delimiter.to_vec());
    }

    /// The longest line accepted, delimiter not counted.
    pub fn max_length(&self) -> usize {
        self.ctl.max_length.unwrap_or(self.parser.max_length())
    }

    /// Changes the maximum line length, for the rest of the chunk too.
    pub fn set_max_length(&mut self, max_length: usize) {
        self.ctl.max_length = Some(max_length);
    }
}

/// Twisted's `LineReceiver`: a [`Protocol`] that splits what it receives into lines for a
/// [`LineHandler`], or passes it on raw.
///
/// The delimiter is `\r\n` and the maximum line length 16384 unless set with
/// [`LineReceiver::with_delimiter`] and [`LineReceiver::with_max_length`]. The framing is
/// [`LineParser`]'s; see the [module documentation](super) for every rule and where it differs
/// from Twisted.
///
/// ```
/// use torsion::protocols::basic::{LineCx, LineHandler, LineReceiver};
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Protocol, Reactor};
///
/// struct Shout;
/// impl LineHandler for Shout {
///     fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
///         cx.send_line(&line.to_ascii_uppercase());
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// let mut p = LineReceiver::new(Shout).with_delimiter(b"\n").with_max_length(8);
/// let cx = &mut Cx::new(&mut t, &reactor);
/// p.data_received(cx, b"hi\nthere\n");
/// p.data_received(cx, b"much too long\n");
/// assert_eq!(t.value(), b"HI\nTHERE\n");
/// assert!(t.disconnecting());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LineReceiver<H> {
    handler: H,
    parser: LineParser,
    ctl: Control,
}

impl<H: LineHandler> LineReceiver<H> {
    /// Wraps `handler`, in line mode with Twisted's defaults.
    pub fn new(handler: H) -> Self {
        LineReceiver {
            handler,
            parser: LineParser::new(),
            ctl: Control::default(),
        }
    }

    /// Sets the line delimiter.
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn with_delimiter(mut self, delimiter: &[u8]) -> Self {
        self.parser.set_delimiter(delimiter);
        self
    }

    /// Sets the maximum line length (delimiter not counted).
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.parser.set_max_length(max_length);
        self
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Unwraps the handler.
    pub fn into_handler(self) -> H {
        self.handler
    }

    /// The framing state: mode, delimiter, limit and the bytes buffered.
    pub fn parser(&self) -> &LineParser {
        &self.parser
    }

    /// True while delivery is paused.
    pub fn is_paused(&self) -> bool {
        self.ctl.paused
    }

    /// Drops the bytes buffered and returns them (Twisted's `clearLineBuffer`). Inside a
    /// callback use [`LineCx::clear_line_buffer`].
    pub fn clear_line_buffer(&mut self) -> Vec<u8> {
        let out = self.parser.pending().to_vec();
        self.parser.clear();
        out
    }

    /// Stops delivering lines and pauses the transport (Twisted's `pauseProducing`).
    pub fn pause_producing(&mut self, cx: &mut Cx<'_>) {
        self.ctl.paused = true;
        cx.transport().pause_producing();
    }

    /// Resumes the transport and delivers what was buffered meanwhile, until the buffer is
    /// drained or a callback pauses again (Twisted's `resumeProducing`).
    ///
    /// ```
    /// use torsion::protocols::basic::{LineCx, LineHandler, LineReceiver};
    /// use torsion::testing::{ProducerState, StringTransport};
    /// use torsion::{Cx, Protocol, Reactor};
    ///
    /// /// Takes one line at a time.
    /// #[derive(Default)]
    /// struct OneByOne(Vec<Vec<u8>>);
    /// impl LineHandler for OneByOne {
    ///     fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
    ///         self.0.push(line.to_vec());
    ///         cx.pause_producing();
    ///     }
    /// }
    ///
    /// let reactor = Reactor::new()?;
    /// let mut t = StringTransport::new();
    /// let mut p = LineReceiver::new(OneByOne::default());
    /// p.data_received(&mut Cx::new(&mut t, &reactor), b"a\r\nb\r\n");
    /// assert_eq!(p.handler().0, [b"a"]);
    /// assert_eq!(t.producer_state(), ProducerState::Paused);
    /// p.resume_producing(&mut Cx::new(&mut t, &reactor));
    /// assert_eq!(p.handler().0, [b"a", b"b"]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn resume_producing(&mut self, cx: &mut Cx<'_>) {
        self.ctl.paused = false;
        cx.transport().resume_producing();
        self.process(cx, &[]);
    }

    /// Stops delivering lines and stops the transport for good (Twisted's `stopProducing`).
    pub fn stop_producing(&mut self, cx: &mut Cx<'_>) {
        self.ctl.paused = true;
        cx.transport().stop_producing();
    }

    /// Parses the buffered bytes followed by `chunk`, one event at a time, until it runs out,
    /// is paused, or the transport is closing.
    fn process(&mut self, cx: &mut Cx<'_>, chunk: &[u8]) {
        let mut pos = 0;
        loop {
            if self.ctl.paused || cx.transport().is_disconnecting() {
                self.parser.feed(&chunk[pos..]);
                return;
            }
            let Some((kind, span)) = self.parser.next_span(chunk, &mut pos) else {
                return;
            };
            let data = self.parser.resolve(chunk, &span);
            // Only where the event ended in the chunk matters afterwards; passing that alone
            // keeps the span in registers.
            let ended = match span {
                Span::Chunk(r) => Ended::InChunk(r.end),
                Span::Buffer(_) => Ended::InBuffer,
            };
            let mut lcx = LineCx {
                cx: &mut *cx,
                parser: &self.parser,
                rest: &chunk[pos..],
                event: data,
                rewindable: kind != Kind::Line,
                ctl: &mut self.ctl,
            };
            match kind {
                Kind::Line => self.handler.line_received(&mut lcx, data),
                Kind::Raw => self.handler.raw_data_received(&mut lcx, data),
                Kind::Exceeded => self.handler.line_length_exceeded(&mut lcx, data),
            }
            self.apply(chunk, &mut pos, ended);
        }
    }

    /// Calls the handler outside of parsing (connection made or lost).
    fn call(&mut self, cx: &mut Cx<'_>, f: impl FnOnce(&mut H, &mut LineCx<'_, '_>)) {
        let mut lcx = LineCx {
            cx,
            parser: &self.parser,
            rest: &[],
            event: &[],
            rewindable: false,
            ctl: &mut self.ctl,
        };
        f(&mut self.handler, &mut lcx);
        self.apply(&[], &mut 0, Ended::Outside);
    }

    /// Applies what the handler asked for during the callback that just returned; `ended` is
    /// where that callback's data ended.
    fn apply(&mut self, chunk: &[u8], pos: &mut usize, ended: Ended) {
        let ctl = &mut self.ctl;
        if std::mem::take(&mut ctl.cleared) {
            self.parser.clear();
            *pos = chunk.len();
        }
        let rewind = std::mem::take(&mut ctl.rewind);
        match ended {
            _ if rewind == 0 => {}
            Ended::InChunk(end) => *pos = end - rewind,
            _ => self.parser.unconsume(rewind),
        }
        if !ctl.extra.is_empty() {
            self.parser.feed(&chunk[*pos..]);
            *pos = chunk.len();
            self.parser.feed(&ctl.extra);
            ctl.extra.clear();
        }
        match ctl.mode.take() {
            Some(true) => self.parser.set_line_mode(),
            Some(false) => self.parser.set_raw_mode(),
            None => {}
        }
        if let Some(d) = ctl.delimiter.take() {
            self.parser.set_delimiter(&d);
        }
        if let Some(m) = ctl.max_length.take() {
            self.parser.set_max_length(m);
        }
    }
}

impl<H: LineHandler + 'static> Protocol for LineReceiver<H> {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        self.call(cx, |h, lcx| h.connection_made(lcx));
        // Bytes handed over with `set_line_mode` are parsed now, as in Twisted.
        self.process(cx, &[]);
    }

    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        self.process(cx, data);
    }

    fn connection_lost(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        self.call(cx, |h, lcx| h.connection_lost(lcx, reason));
    }
}
