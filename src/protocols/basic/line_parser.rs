//! [`LineParser`]: `LineReceiver`'s framing as a plain state machine.

use super::splitter::{Search, Span, Splitter};

/// One thing a line parser found in its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineEvent<'a> {
    /// A complete line, without its delimiter.
    Line(&'a [u8]),
    /// Bytes received in raw mode.
    Raw(&'a [u8]),
    /// Input that broke the length limit. For [`LineParser`] this is every pending byte; for
    /// [`LineOnlyParser`](super::LineOnlyParser), the one line that was too long or the
    /// unterminated tail.
    LineLengthExceeded(&'a [u8]),
}

/// What kind of event a span carries (the wrapper resolves spans itself, to keep the parser
/// readable while a callback runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Line,
    Raw,
    Exceeded,
}

impl Kind {
    pub(crate) fn event(self, data: &[u8]) -> LineEvent<'_> {
        match self {
            Kind::Line => LineEvent::Line(data),
            Kind::Raw => LineEvent::Raw(data),
            Kind::Exceeded => LineEvent::LineLengthExceeded(data),
        }
    }
}

/// `LineReceiver`'s framing without a transport: feed it bytes, take lines (or raw data) out.
///
/// It follows Twisted's `LineReceiver` exactly: lines end at the first delimiter; a line longer
/// than `max_length` (delimiter not counted) is exceeded, and so is an unterminated buffer of at
/// least `max_length + delimiter.len()` bytes. Either way
/// [`LineEvent::LineLengthExceeded`] carries **every** pending byte (the long line, its
/// delimiter and whatever follows) and the buffer is emptied. In raw mode every pending byte
/// comes out as one [`LineEvent::Raw`].
///
/// The search is O(n) in the bytes received: bytes already searched are not searched again,
/// and no delimiter is looked for further than `max_length + delimiter.len()` bytes ahead.
///
/// ```
/// use torsion::protocols::basic::{LineEvent, LineParser};
///
/// let mut p = LineParser::new().with_max_length(4);
/// p.feed(b"abc\r\nxyz");
/// assert_eq!(p.next_event(), Some(LineEvent::Line(b"abc")));
/// assert_eq!(p.next_event(), None);
/// p.feed(b"zz");
/// assert_eq!(p.next_event(), None, "5 bytes: the delimiter may still be on its way");
/// p.feed(b"z");
/// assert_eq!(p.next_event(), Some(LineEvent::LineLengthExceeded(b"xyzzzz")));
/// ```
#[derive(Clone, Debug)]
pub struct LineParser {
    splitter: Splitter,
    max_length: usize,
    line_mode: bool,
}

impl Default for LineParser {
    fn default() -> Self {
        Self::new()
    }
}

impl LineParser {
    /// Twisted's default delimiter.
    pub const DEFAULT_DELIMITER: &'static [u8] = b"\r\n";
    /// Twisted's default `MAX_LENGTH`.
    pub const DEFAULT_MAX_LENGTH: usize = 16384;

    /// A parser in line mode with delimiter `\r\n` and a maximum line length of 16384.
    pub fn new() -> Self {
        LineParser {
            splitter: Splitter::new(Self::DEFAULT_DELIMITER),
            max_length: Self::DEFAULT_MAX_LENGTH,
            line_mode: true,
        }
    }

    /// Sets the delimiter.
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn with_delimiter(mut self, delimiter: &[u8]) -> Self {
        self.set_delimiter(delimiter);
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

    /// Changes the delimiter; bytes already buffered are split by the new one.
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn set_delimiter(&mut self, delimiter: &[u8]) {
        self.splitter.set_delimiter(delimiter);
    }

    /// The longest line accepted, delimiter not counted.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Changes the maximum line length.
    pub fn set_max_length(&mut self, max_length: usize) {
        self.max_length = max_length;
    }

    /// True in line mode, false in raw mode.
    pub fn is_line_mode(&self) -> bool {
        self.line_mode
    }

    /// Splits what follows into lines.
    pub fn set_line_mode(&mut self) {
        self.line_mode = true;
    }

    /// Hands what follows over as raw data.
    pub fn set_raw_mode(&mut self) {
        self.line_mode = false;
    }

    /// Appends bytes to the input.
    pub fn feed(&mut self, data: &[u8]) {
        self.splitter.feed(data);
    }

    /// The bytes buffered and not parsed yet.
    pub fn pending(&self) -> &[u8] {
        self.splitter.buf.as_slice()
    }

    /// Drops the buffered bytes (Twisted's `clearLineBuffer`, less its return value: read
    /// [`LineParser::pending`] first).
    pub fn clear(&mut self) {
        self.splitter.clear();
    }

    /// The next event from the buffered bytes, or `None` until more are fed.
    pub fn next_event(&mut self) -> Option<LineEvent<'_>> {
        self.next_event_in(&[], &mut 0)
    }

    /// The next event from the buffered bytes followed by `chunk[*pos..]`, advancing `*pos`
    /// past what it used.
    ///
    /// This is the zero-copy way to parse a chunk: lines that lie wholly in `chunk` are
    /// returned as slices of it, and only an incomplete line at its end is copied into the
    /// parser. Once this returns `None`, `*pos == chunk.len()`. To stop early, [`feed`] the
    /// unparsed rest `&chunk[*pos..]` so that it is not lost.
    ///
    /// [`feed`]: LineParser::feed
    ///
    /// ```
    /// use torsion::protocols::basic::{LineEvent, LineParser};
    ///
    /// let mut p = LineParser::new();
    /// let chunk = b"one\r\ntwo\r\nthr";
    /// let mut pos = 0;
    /// let mut lines = Vec::new();
    /// while let Some(LineEvent::Line(line)) = p.next_event_in(chunk, &mut pos) {
    ///     lines.push(line.to_vec());
    /// }
    /// assert_eq!(lines, [b"one", b"two"]);
    /// assert_eq!(p.pending(), b"thr");
    /// ```
    pub fn next_event_in<'a>(
        &'a mut self,
        chunk: &'a [u8],
        pos: &mut usize,
    ) -> Option<LineEvent<'a>> {
        let (kind, span) = self.next_span(chunk, pos)?;
        Some(kind.event(self.splitter.resolve(chunk, &span)))
    }

    #[inline]
    pub(crate) fn next_span(&mut self, chunk: &[u8], pos: &mut usize) -> Option<(Kind, Span)> {
        self.splitter.buf.release_if_idle();
        if !self.line_mode {
            if self.splitter.buf.is_empty() && *pos == chunk.len() {
                return None;
            }
            return Some((Kind::Raw, self.splitter.take_all(chunk, pos)));
        }
        let limit = self
            .max_length
            .saturating_add(self.splitter.delimiter().len());
        match self.splitter.find(chunk, pos, limit) {
            // Within the window a line is never longer than `max_length`.
            Search::Line(span) => Some((Kind::Line, span)),
            Search::Beyond => Some((Kind::Exceeded, self.splitter.take_all(chunk, pos))),
            Search::Incomplete => None,
        }
    }

    #[inline]
    pub(crate) fn resolve<'a>(&'a self, chunk: &'a [u8], span: &Span) -> &'a [u8] {
        self.splitter.resolve(chunk, span)
    }

    /// Gives back the last `n` bytes of the event just taken, which consumed everything.
    pub(crate) fn unconsume(&mut self, n: usize) {
        self.splitter.buf.unconsume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(p: &mut LineParser) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(ev) = p.next_event() {
            out.push(match ev {
                LineEvent::Line(l) => format!("L:{}", String::from_utf8_lossy(l)),
                LineEvent::Raw(l) => format!("R:{}", String::from_utf8_lossy(l)),
                LineEvent::LineLengthExceeded(l) => format!("X:{}", String::from_utf8_lossy(l)),
            });
        }
        out
    }

    #[test]
    fn exactly_max_length_is_a_line() {
        let mut p = LineParser::new().with_max_length(4);
        p.feed(b"xxxx\r\nxxxxx\r\nr");
        assert_eq!(drain(&mut p), ["L:xxxx", "X:xxxxx\r\nr"]);
    }

    #[test]
    fn unterminated_threshold_is_max_plus_delimiter() {
        let mut p = LineParser::new().with_max_length(4);
        p.feed(b"xxxx\r");
        assert!(drain(&mut p).is_empty());
        p.feed(b"\nxxxx");
        assert_eq!(drain(&mut p), ["L:xxxx"]);

        let mut p = LineParser::new().with_max_length(4);
        p.feed(b"xxxxx");
        assert!(drain(&mut p).is_empty());
        p.feed(b"\r");
        assert_eq!(drain(&mut p), ["X:xxxxx\r"]);
    }

    #[test]
    fn raw_mode_takes_everything_pending() {
        let mut p = LineParser::new();
        p.feed(b"a\r\nb");
        assert_eq!(p.next_event(), Some(LineEvent::Line(b"a")));
        p.set_raw_mode();
        p.feed(b"\r\nc");
        assert_eq!(drain(&mut p), ["R:b\r\nc"]);
        p.set_line_mode();
        p.feed(b"d\r\n");
        assert_eq!(drain(&mut p), ["L:d"]);
    }

    #[test]
    fn changing_the_delimiter_resplits_buffered_bytes() {
        let mut p = LineParser::new();
        p.feed(b"a\nb\r");
        assert!(drain(&mut p).is_empty());
        p.set_delimiter(b"\n");
        assert_eq!(drain(&mut p), ["L:a"]);
        assert_eq!(p.pending(), b"b\r");
    }
}
