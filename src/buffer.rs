//! The pending-write buffer of a connection.
//!
//! One contiguous `Vec<u8>` with a read offset: appending is a `memcpy`, sending hands the
//! kernel one slice, and consumed bytes are reclaimed by sliding the rest to the front only
//! once they are at least half the buffer, so each byte is copied O(1) times on average
//! (Twisted re-copies its whole buffer under pressure, #12742).

/// Bytes written but not yet sent.
#[derive(Debug, Default)]
pub(crate) struct WriteBuffer {
    data: Vec<u8>,
    head: usize,
}

impl WriteBuffer {
    pub(crate) fn from_slice(bytes: &[u8]) -> Self {
        WriteBuffer {
            data: bytes.to_vec(),
            head: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.head
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What is waiting, oldest first.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.data[self.head..]
    }

    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        if self.head > 0 && self.head >= self.data.len() / 2 {
            self.compact();
        }
        self.data.extend_from_slice(bytes);
    }

    /// Drops the first `n` waiting bytes (they were sent).
    pub(crate) fn consume(&mut self, n: usize) {
        self.head = (self.head + n).min(self.data.len());
        if self.head == self.data.len() {
            self.data.clear();
            self.head = 0;
        }
    }

    fn compact(&mut self) {
        self.data.copy_within(self.head.., 0);
        self.data.truncate(self.data.len() - self.head);
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_order_across_consume_and_compaction() {
        let mut b = WriteBuffer::from_slice(b"abcdef");
        b.consume(4);
        assert_eq!(b.as_slice(), b"ef");
        b.extend(b"gh");
        assert_eq!(b.as_slice(), b"efgh");
        b.consume(4);
        assert!(b.is_empty());
    }

    proptest! {
        #[test]
        fn behaves_like_a_queue(ops in proptest::collection::vec((any::<bool>(), 0usize..300), 1..200)) {
            let mut b = WriteBuffer::default();
            let mut model: std::collections::VecDeque<u8> = Default::default();
            let mut next = 0u8;
            for (push, n) in ops {
                if push {
                    let bytes: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                    b.extend(&bytes);
                    model.extend(&bytes);
                } else {
                    let n = n.min(model.len());
                    b.consume(n);
                    model.drain(..n);
                }
                prop_assert_eq!(b.len(), model.len());
                prop_assert_eq!(b.as_slice(), &model.iter().copied().collect::<Vec<_>>()[..]);
                // Compaction keeps the dead prefix at most as large as the live part plus one push.
                prop_assert!(b.head <= b.data.len());
            }
        }
    }
}
