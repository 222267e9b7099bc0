//! Delimiter search shared by the two line parsers.
//!
//! Input comes in two parts: the bytes buffered from earlier reads, then the chunk being
//! parsed now. While nothing is buffered, lines are found in the chunk itself and handed out as
//! slices of it, without a copy; only a partial line at the end of a chunk is buffered. While
//! something is buffered, just enough of the chunk is copied behind it to complete the first
//! line, and parsing goes back to the chunk as soon as the buffer drains.
//!
//! Each byte is searched once: `searched` remembers how much of the buffer is known to hold no
//! start of a delimiter, so a long partial line that grows over many reads is not scanned again.

use std::ops::Range;

use memchr::memmem;

use super::buffer::RecvBuffer;

/// Where a parsed piece lies: in the parser's buffer (positions in its storage) or in the
/// chunk being parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Span {
    Buffer(Range<usize>),
    Chunk(Range<usize>),
}

impl Span {
    pub(crate) fn len(&self) -> usize {
        match self {
            Span::Buffer(r) | Span::Chunk(r) => r.len(),
        }
    }
}

/// The outcome of looking for the next line.
pub(crate) enum Search {
    /// A line (without its delimiter); it and its delimiter are consumed.
    Line(Span),
    /// No delimiter ends within the first `limit` pending bytes, and at least `limit` bytes are
    /// pending. Nothing was consumed.
    Beyond,
    /// No delimiter in the pending bytes, fewer than `limit` of them; the whole chunk is now
    /// buffered.
    Incomplete,
}

/// A delimiter search tuned for the usual short delimiters.
///
/// For up to four bytes, `memchr` finds candidates for the first byte and each is checked in
/// place: on lines of a few dozen bytes that beats a general substring search, whose setup
/// costs more than the scan. The check is bounded by the delimiter's length, so the search
/// stays linear. Longer delimiters use `memmem`.
#[derive(Clone)]
enum Needle {
    Short(Vec<u8>),
    Long(Box<memmem::Finder<'static>>),
}

impl Needle {
    fn new(delimiter: &[u8]) -> Self {
        if delimiter.len() <= 4 {
            Needle::Short(delimiter.to_vec())
        } else {
            Needle::Long(Box::new(memmem::Finder::new(delimiter).into_owned()))
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Needle::Short(d) => d,
            Needle::Long(f) => f.needle(),
        }
    }

    #[inline]
    fn find(&self, haystack: &[u8]) -> Option<usize> {
        match self {
            Needle::Short(d) => {
                let mut from = 0;
                while let Some(i) = memchr::memchr(d[0], &haystack[from..]) {
                    let at = from + i;
                    let candidate = &haystack[at..];
                    if candidate.len() >= d.len()
                        && d[1..].iter().zip(&candidate[1..]).all(|(a, b)| a == b)
                    {
                        return Some(at);
                    }
                    from = at + 1;
                }
                None
            }
            Needle::Long(f) => f.find(haystack),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Splitter {
    pub(crate) buf: RecvBuffer,
    delimiter: Needle,
    /// Positions of the buffer, counted from its first live byte, known not to start a
    /// delimiter.
    searched: usize,
}

impl std::fmt::Debug for Splitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splitter")
            .field("buffered", &self.buf.len())
            .field("delimiter", &self.delimiter())
            .finish()
    }
}

impl Splitter {
    /// # Panics
    /// If `delimiter` is empty.
    pub(crate) fn new(delimiter: &[u8]) -> Self {
        assert!(!delimiter.is_empty(), "a line delimiter cannot be empty");
        Splitter {
            buf: RecvBuffer::default(),
            delimiter: Needle::new(delimiter),
            searched: 0,
        }
    }

    pub(crate) fn delimiter(&self) -> &[u8] {
        self.delimiter.bytes()
    }

    /// # Panics
    /// If `delimiter` is empty.
    pub(crate) fn set_delimiter(&mut self, delimiter: &[u8]) {
        if delimiter != self.delimiter() {
            *self = Splitter {
                buf: std::mem::take(&mut self.buf),
                ..Splitter::new(delimiter)
            };
        }
    }

    pub(crate) fn feed(&mut self, data: &[u8]) {
        self.buf.extend(data);
    }

    /// Drops the buffered bytes (lazily: they stay readable for [`RecvBuffer::unconsume`]).
    pub(crate) fn clear(&mut self) {
        self.buf.consume_all();
        self.searched = 0;
    }

    #[inline]
    pub(crate) fn resolve<'a>(&'a self, chunk: &'a [u8], span: &Span) -> &'a [u8] {
        match span {
            Span::Buffer(r) => self.buf.slice(r.clone()),
            Span::Chunk(r) => &chunk[r.clone()],
        }
    }

    /// Finds the first delimiter in the buffered bytes followed by `chunk[*pos..]`, looking
    /// only at delimiters that end within the first `limit` pending bytes.
    #[inline]
    pub(crate) fn find(&mut self, chunk: &[u8], pos: &mut usize, limit: usize) -> Search {
        if !self.buf.is_empty() {
            return self.find_buffered_then_chunk(chunk, pos, limit);
        }
        let rest = &chunk[*pos..];
        match self.delimiter.find(&rest[..rest.len().min(limit)]) {
            Some(q) => {
                let start = *pos;
                *pos += q + self.delimiter().len();
                Search::Line(Span::Chunk(start..start + q))
            }
            None if rest.len() >= limit => Search::Beyond,
            None => self.stash(chunk, pos),
        }
    }

    /// Buffers the rest of a chunk that holds no delimiter.
    #[cold]
    fn stash(&mut self, chunk: &[u8], pos: &mut usize) -> Search {
        self.buf.extend(&chunk[*pos..]);
        *pos = chunk.len();
        self.searched = self.buf.len().saturating_sub(self.delimiter().len() - 1);
        Search::Incomplete
    }

    fn find_buffered_then_chunk(&mut self, chunk: &[u8], pos: &mut usize, limit: usize) -> Search {
        let dlen = self.delimiter().len();
        let rest = &chunk[*pos..];
        let before = self.buf.len();
        if let Some(span) = self.find_buffered(limit) {
            return Search::Line(span);
        }
        if before >= limit {
            return Search::Beyond;
        }
        if rest.is_empty() {
            return Search::Incomplete;
        }
        // A delimiter may straddle the end of the buffer: copy the few bytes that could
        // complete one and look again.
        let k = (dlen - 1).min(rest.len());
        self.buf.extend(&rest[..k]);
        *pos += k;
        if let Some(span) = self.find_buffered(limit) {
            return Search::Line(span);
        }
        let room = limit - before;
        match self.delimiter.find(&rest[..rest.len().min(room)]) {
            Some(q) => {
                // Any match within the first k bytes was found in the buffer above.
                debug_assert!(q + dlen > k);
                self.buf.extend(&rest[k..q + dlen]);
                *pos += q + dlen - k;
                let start = self.buf.range().start;
                self.buf.consume_all();
                self.searched = 0;
                Search::Line(Span::Buffer(start..start + before + q))
            }
            None if before + rest.len() >= limit => Search::Beyond,
            None => self.stash(chunk, pos),
        }
    }

    fn find_buffered(&mut self, limit: usize) -> Option<Span> {
        let live = self.buf.as_slice();
        let end = live.len().min(limit);
        if self.searched < end {
            if let Some(i) = self.delimiter.find(&live[self.searched..end]) {
                let p = self.searched + i;
                let start = self.buf.range().start;
                self.buf.consume(p + self.delimiter().len());
                self.searched = 0;
                return Some(Span::Buffer(start..start + p));
            }
        }
        self.searched = self
            .searched
            .max(end.saturating_sub(self.delimiter().len() - 1));
        None
    }

    /// Consumes every pending byte (buffered and `chunk[*pos..]`) as one span.
    pub(crate) fn take_all(&mut self, chunk: &[u8], pos: &mut usize) -> Span {
        let start = *pos;
        *pos = chunk.len();
        if self.buf.is_empty() {
            return Span::Chunk(start..chunk.len());
        }
        self.buf.extend(&chunk[start..]);
        let range = self.buf.range();
        self.buf.consume_all();
        self.searched = 0;
        Span::Buffer(range)
    }

    /// Buffers `chunk[*pos..]`, then drops every complete line from the buffer, keeping what
    /// follows the last delimiter.
    pub(crate) fn drop_complete_lines(&mut self, chunk: &[u8], pos: &mut usize) {
        self.buf.extend(&chunk[*pos..]);
        *pos = chunk.len();
        let dlen = self.delimiter().len();
        let live = self.buf.as_slice();
        let mut end = 0;
        while let Some(i) = self.delimiter.find(&live[end..]) {
            end += i + dlen;
        }
        self.buf.consume(end);
        self.searched = self.buf.len().saturating_sub(dlen - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &mut Splitter, chunk: &[u8], limit: usize) -> (Vec<Vec<u8>>, bool) {
        let mut pos = 0;
        let mut out = Vec::new();
        loop {
            match s.find(chunk, &mut pos, limit) {
                Search::Line(span) => out.push(s.resolve(chunk, &span).to_vec()),
                Search::Beyond => return (out, true),
                Search::Incomplete => {
                    assert_eq!(pos, chunk.len());
                    return (out, false);
                }
            }
        }
    }

    #[test]
    fn lines_in_one_chunk_are_not_copied() {
        let mut s = Splitter::new(b"\r\n");
        let chunk = b"ab\r\ncd\r\nef";
        let mut pos = 0;
        let mut spans = Vec::new();
        while let Search::Line(span) = s.find(chunk, &mut pos, usize::MAX) {
            spans.push(span);
        }
        assert_eq!(spans, [Span::Chunk(0..2), Span::Chunk(4..6)]);
        assert_eq!(s.buf.as_slice(), b"ef");
    }

    #[test]
    fn a_delimiter_split_over_three_reads_is_found() {
        let mut s = Splitter::new(b"abc");
        assert_eq!(lines(&mut s, b"xya", usize::MAX).0.len(), 0);
        assert_eq!(lines(&mut s, b"b", usize::MAX).0.len(), 0);
        let (l, _) = lines(&mut s, b"cz", usize::MAX);
        assert_eq!(l, [b"xy"]);
        assert_eq!(s.buf.as_slice(), b"z");
    }

    #[test]
    fn overlapping_delimiters_split_like_python() {
        // b"aaaa".split(b"aa") == [b"", b"", b""]
        let mut s = Splitter::new(b"aa");
        let (l, _) = lines(&mut s, b"a", usize::MAX);
        assert!(l.is_empty());
        let (l, _) = lines(&mut s, b"aaa", usize::MAX);
        assert_eq!(l, [b"", b""]);
        assert_eq!(s.buf.as_slice(), b"");
    }

    #[test]
    fn the_limit_counts_buffered_and_new_bytes() {
        let mut s = Splitter::new(b"\r\n");
        assert!(!lines(&mut s, b"xxxx", 6).1);
        assert!(!lines(&mut s, b"\r", 6).1);
        let (l, beyond) = lines(&mut s, b"\nxxxx", 6);
        assert_eq!((l, beyond), (vec![b"xxxx".to_vec()], false));
        assert!(lines(&mut s, b"yy", 6).1);
    }
}
