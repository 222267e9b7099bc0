//! [`LineOnlyReceiver`]: lines only, no raw mode, and Twisted's other length rule.

use std::ops::{Deref, DerefMut};

use super::line_parser::{Kind, LineEvent};
use super::splitter::{Search, Span, Splitter};
use crate::{Cx, Protocol, Reason};

/// `LineOnlyReceiver`'s framing without a transport.
///
/// Its length rule is Twisted's `LineOnlyReceiver`'s, which is not `LineReceiver`'s:
/// - a complete line longer than `max_length` gives [`LineEvent::LineLengthExceeded`] with
///   **that line only**, and the complete lines after it in the same input are dropped;
/// - once the complete lines are out, an unterminated tail longer than `max_length` (not
///   `max_length + delimiter.len()`) gives [`LineEvent::LineLengthExceeded`] with the tail.
///   The tail stays buffered, as in Twisted, and is reported again, grown, after the next
///   input.
///
/// It never yields [`LineEvent::Raw`].
///
/// ```
/// use torsion::protocols::basic::{LineEvent, LineOnlyParser};
///
/// let mut p = LineOnlyParser::new().with_max_length(4);
/// p.feed(b"abcd\r\nabcde");
/// assert_eq!(p.next_event(), Some(LineEvent::Line(b"abcd")));
/// assert_eq!(p.next_event(), Some(LineEvent::LineLengthExceeded(b"abcde")));
/// assert_eq!(p.next_event(), None);
/// ```
#[derive(Clone, Debug)]
pub struct LineOnlyParser {
    splitter: Splitter,
    max_length: usize,
    /// Bytes arrived since the tail was last checked.
    fresh: bool,
    /// A line was too long: the complete lines after it are to be dropped.
    drop_lines: bool,
}

impl Default for LineOnlyParser {
    fn default() -> Self {
        Self::new()
    }
}

impl LineOnlyParser {
    /// A parser with delimiter `\r\n` and a maximum line length of 16384.
    pub fn new() -> Self {
        LineOnlyParser {
            splitter: Splitter::new(super::LineParser::DEFAULT_DELIMITER),
            max_length: super::LineParser::DEFAULT_MAX_LENGTH,
            fresh: false,
            drop_lines: false,
        }
    }

    /// Sets the delimiter.
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn with_delimiter(mut self, delimiter: &[u8]) -> Self {
        self.splitter.set_delimiter(delimiter);
        self
    }

    /// Sets the maximum line length.
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The line delimiter.
    pub fn delimiter(&self) -> &[u8] {
        self.splitter.delimiter()
    }

    /// The longest line accepted, delimiter not counted.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Appends bytes to the input.
    pub fn feed(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.fresh = true;
        }
        self.splitter.feed(data);
    }

    /// The bytes buffered and not parsed yet.
    pub fn pending(&self) -> &[u8] {
        self.splitter.buf.as_slice()
    }

    /// The next event from the buffered bytes, or `None` until more are fed.
    pub fn next_event(&mut self) -> Option<LineEvent<'_>> {
        self.next_event_in(&[], &mut 0)
    }

    /// The next event from the buffered bytes followed by `chunk[*pos..]`, without copying
    /// complete lines out of `chunk` (see [`LineParser::next_event_in`](super::LineParser::next_event_in)).
    pub fn next_event_in<'a>(
        &'a mut self,
        chunk: &'a [u8],
        pos: &mut usize,
    ) -> Option<LineEvent<'a>> {
        let (kind, span) = self.next_span(chunk, pos)?;
        Some(kind.event(self.splitter.resolve(chunk, &span)))
    }

    fn next_span(&mut self, chunk: &[u8], pos: &mut usize) -> Option<(Kind, Span)> {
        self.splitter.buf.release_if_idle();
        if *pos < chunk.len() {
            self.fresh = true;
        }
        if std::mem::take(&mut self.drop_lines) {
            self.splitter.drop_complete_lines(chunk, pos);
            self.fresh = false;
            return None;
        }
        match self.splitter.find(chunk, pos, usize::MAX) {
            Search::Line(span) if span.len() > self.max_length => {
                self.drop_lines = true;
                Some((Kind::Exceeded, span))
            }
            Search::Line(span) => Some((Kind::Line, span)),
            Search::Beyond | Search::Incomplete => {
                let tail = self.splitter.buf.len();
                if std::mem::take(&mut self.fresh) && tail > self.max_length {
                    Some((Kind::Exceeded, Span::Buffer(self.splitter.buf.range())))
                } else {
                    None
                }
            }
        }
    }
}

/// What a [`LineOnlyReceiver`] calls back.
pub trait LineOnlyHandler {
    /// The connection is up.
    fn connection_made(&mut self, cx: &mut LineOnlyCx<'_, '_>) {
        let _ = cx;
    }

    /// A complete line arrived, without its delimiter.
    fn line_received(&mut self, cx: &mut LineOnlyCx<'_, '_>, line: &[u8]);

    /// A line longer than the maximum arrived (`line` is that line), or the unterminated
    /// tail grew longer than the maximum (`line` is the tail). The default closes the
    /// connection gracefully.
    fn line_length_exceeded(&mut self, cx: &mut LineOnlyCx<'_, '_>, line: &[u8]) {
        let _ = line;
        cx.transport().lose_connection();
    }

    /// The connection is gone.
    fn connection_lost(&mut self, cx: &mut LineOnlyCx<'_, '_>, reason: Reason) {
        let _ = (cx, reason);
    }
}

/// The context of a [`LineOnlyHandler`] callback: the connection's [`Cx`] (through `Deref`)
/// and [`LineOnlyCx::send_line`].
pub struct LineOnlyCx<'a, 'b> {
    cx: &'a mut Cx<'b>,
    delimiter: &'a [u8],
}

impl<'b> Deref for LineOnlyCx<'_, 'b> {
    type Target = Cx<'b>;
    fn deref(&self) -> &Cx<'b> {
        self.cx
    }
}

impl<'b> DerefMut for LineOnlyCx<'_, 'b> {
    fn deref_mut(&mut self) -> &mut Cx<'b> {
        self.cx
    }
}

impl LineOnlyCx<'_, '_> {
    /// Sends `line` and the delimiter in one vectored write (Twisted's
    /// `writeSequence((line, delimiter))`).
    pub fn send_line(&mut self, line: &[u8]) {
        self.cx.transport().write_vectored(&[line, self.delimiter]);
    }

    /// The line delimiter.
    pub fn delimiter(&self) -> &[u8] {
        self.delimiter
    }
}

/// Twisted's `LineOnlyReceiver`: lines only, with no raw mode and no pausing, and
/// [`LineOnlyParser`]'s length rule. Nothing is delivered once the transport is closing.
///
/// ```
/// use torsion::protocols::basic::{LineOnlyCx, LineOnlyHandler, LineOnlyReceiver};
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Protocol, Reactor};
///
/// #[derive(Default)]
/// struct Collect(Vec<Vec<u8>>);
/// impl LineOnlyHandler for Collect {
///     fn line_received(&mut self, _: &mut LineOnlyCx<'_, '_>, line: &[u8]) {
///         self.0.push(line.to_vec());
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// let mut p = LineOnlyReceiver::new(Collect::default()).with_max_length(4);
/// p.data_received(&mut Cx::new(&mut t, &reactor), b"one\r\ntwo\r\nthree");
/// assert_eq!(p.handler().0, [b"one", b"two"]);
/// assert!(t.disconnecting(), "an unterminated 5-byte tail is already too long");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LineOnlyReceiver<H> {
    handler: H,
    parser: LineOnlyParser,
}

impl<H: LineOnlyHandler> LineOnlyReceiver<H> {
    /// Wraps `handler`, with delimiter `\r\n` and a maximum line length of 16384.
    pub fn new(handler: H) -> Self {
        LineOnlyReceiver {
            handler,
            parser: LineOnlyParser::new(),
        }
    }

    /// Sets the line delimiter.
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn with_delimiter(mut self, delimiter: &[u8]) -> Self {
        self.parser = self.parser.with_delimiter(delimiter);
        self
    }

    /// Sets the maximum line length.
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.parser.max_length = max_length;
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

    /// The framing state.
    pub fn parser(&self) -> &LineOnlyParser {
        &self.parser
    }
}

impl<H: LineOnlyHandler + 'static> Protocol for LineOnlyReceiver<H> {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        let mut lcx = LineOnlyCx {
            cx,
            delimiter: self.parser.delimiter(),
        };
        self.handler.connection_made(&mut lcx);
    }

    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        let mut pos = 0;
        loop {
            if cx.transport().is_disconnecting() {
                self.parser.feed(&data[pos..]);
                return;
            }
            let Some((kind, span)) = self.parser.next_span(data, &mut pos) else {
                return;
            };
            let line = self.parser.splitter.resolve(data, &span);
            let mut lcx = LineOnlyCx {
                cx: &mut *cx,
                delimiter: self.parser.delimiter(),
            };
            match kind {
                Kind::Exceeded => self.handler.line_length_exceeded(&mut lcx, line),
                _ => self.handler.line_received(&mut lcx, line),
            }
        }
    }

    fn connection_lost(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        let mut lcx = LineOnlyCx {
            cx,
            delimiter: self.parser.delimiter(),
        };
        self.handler.connection_lost(&mut lcx, reason);
    }
}
