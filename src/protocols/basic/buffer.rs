//! The receive buffer every framing parser keeps its unparsed bytes in.

use std::ops::Range;

/// Capacity an empty buffer may keep between reads. Anything larger is handed back to the
/// allocator once the buffer drains, so that an idle connection does not pin the memory of the
/// largest message it ever saw, while small partial lines reuse their allocation.
const IDLE_CAPACITY: usize = 4096;

/// Bytes received but not parsed yet: a `Vec` plus a read offset.
///
/// Consuming only moves the offset, so the consumed bytes stay valid until the next
/// [`RecvBuffer::extend`]; parsers hand out slices of them, and can give the last ones back.
/// That is what sets it apart from the connection's write buffer, which forgets sent bytes at
/// once. The live bytes are moved to the
/// front lazily, only when at least as many bytes have been consumed as are still live, which
/// keeps the copying amortized O(1) per byte.
#[derive(Debug, Default, Clone)]
pub(crate) struct RecvBuffer {
    data: Vec<u8>,
    start: usize,
}

impl RecvBuffer {
    /// Number of live (unconsumed) bytes.
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.data.len()
    }

    /// The live bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// Where the live bytes sit in the underlying storage; stable until the next `extend`.
    pub(crate) fn range(&self) -> Range<usize> {
        self.start..self.data.len()
    }

    /// Bytes of the underlying storage, live or recently consumed.
    pub(crate) fn slice(&self, range: Range<usize>) -> &[u8] {
        &self.data[range]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
    }

    pub(crate) fn consume_all(&mut self) {
        self.start = self.data.len();
    }

    /// Gives back the last `n` consumed bytes. Valid only while nothing was appended since
    /// they were consumed.
    pub(crate) fn unconsume(&mut self, n: usize) {
        debug_assert!(n <= self.start);
        self.start -= n;
    }

    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let live = self.len();
        if self.start > 0 && self.start >= live {
            self.data.copy_within(self.start.., 0);
            self.data.truncate(live);
            self.start = 0;
        }
        self.data.extend_from_slice(bytes);
    }

    /// Resets an empty buffer, freeing a large allocation. Call only when no slice handed out
    /// earlier is still in use.
    pub(crate) fn release_if_idle(&mut self) {
        if !self.is_empty() {
            return;
        }
        if self.data.capacity() > IDLE_CAPACITY {
            self.data = Vec::new();
        } else {
            self.data.clear();
        }
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_bytes_stay_readable_until_the_next_extend() {
        let mut b = RecvBuffer::default();
        b.extend(b"hello world");
        let r = b.range();
        b.consume(6);
        assert_eq!(b.as_slice(), b"world");
        assert_eq!(b.slice(r.start..r.start + 5), b"hello");
        b.unconsume(1);
        assert_eq!(b.as_slice(), b" world");
    }

    #[test]
    fn compacts_only_when_half_is_consumed() {
        let mut b = RecvBuffer::default();
        b.extend(b"abcdef");
        b.consume(2);
        b.extend(b"g");
        assert_eq!(b.range(), 2..7, "4 live bytes, 2 consumed: no move yet");
        b.consume(2);
        b.extend(b"h");
        assert_eq!(b.range(), 0..4);
        assert_eq!(b.as_slice(), b"efgh");
    }

    #[test]
    fn idle_release_frees_large_allocations_only() {
        let mut b = RecvBuffer::default();
        b.extend(&[0; 100]);
        b.consume_all();
        b.release_if_idle();
        assert!(b.data.capacity() >= 100);
        assert_eq!(b.range(), 0..0);
        b.extend(&vec![0; IDLE_CAPACITY * 2]);
        b.release_if_idle();
        assert_eq!(
            b.len(),
            IDLE_CAPACITY * 2,
            "a buffer with live bytes is kept"
        );
        b.consume_all();
        b.release_if_idle();
        assert_eq!(b.data.capacity(), 0);
    }
}
