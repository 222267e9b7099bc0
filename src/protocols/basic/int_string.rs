//! [`IntNStringParser`]: strings after a big-endian length prefix, as a plain state machine.

use super::buffer::RecvBuffer;
use super::string_receiver::{StringEvent, StringFraming, StringTooLong, sealed};
use crate::Transport;

/// Length-prefixed framing without a transport (Twisted's `IntNStringReceiver` parser): each
/// string follows its length as a big-endian unsigned integer of `BYTES` bytes (1, 2 or 4).
///
/// A prefix above the maximum (99999 by default) gives
/// [`StringEvent::LengthLimitExceeded`] as soon as it is complete, before any of the payload,
/// and the parser takes nothing more. A prefix of exactly the maximum is accepted.
///
/// ```
/// use torsion::protocols::basic::{Int32StringParser, StringEvent, StringFraming};
///
/// let mut p = Int32StringParser::default();
/// p.set_max_length(10);
/// p.feed(b"\x00\x00\x00\x03abc\x00\x00\x00\x0b");
/// assert_eq!(p.next_event(), Some(StringEvent::String(b"abc")));
/// assert_eq!(p.next_event(), Some(StringEvent::LengthLimitExceeded(11)));
/// assert_eq!(p.next_event(), None);
/// ```
#[derive(Clone, Debug)]
pub struct IntNStringParser<const BYTES: usize> {
    buf: RecvBuffer,
    max_length: usize,
    failed: bool,
}

/// [`IntNStringParser`] with a 1-byte prefix.
pub type Int8StringParser = IntNStringParser<1>;
/// [`IntNStringParser`] with a 2-byte prefix.
pub type Int16StringParser = IntNStringParser<2>;
/// [`IntNStringParser`] with a 4-byte prefix.
pub type Int32StringParser = IntNStringParser<4>;

impl<const BYTES: usize> Default for IntNStringParser<BYTES> {
    fn default() -> Self {
        const {
            assert!(
                BYTES == 1 || BYTES == 2 || BYTES == 4,
                "prefixes are 1, 2 or 4 bytes"
            )
        };
        IntNStringParser {
            buf: RecvBuffer::default(),
            max_length: Self::DEFAULT_MAX_LENGTH,
            failed: false,
        }
    }
}

impl<const BYTES: usize> IntNStringParser<BYTES> {
    /// Twisted's default `MAX_LENGTH`.
    pub const DEFAULT_MAX_LENGTH: usize = 99999;

    /// The longest string the prefix can carry: 255, 65535 or 4294967295.
    pub const PREFIX_MAX: u64 = (1 << (8 * BYTES)) - 1;

    /// True once a length prefix above the maximum arrived.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    fn prefix(bytes: &[u8]) -> usize {
        bytes[..BYTES]
            .iter()
            .fold(0, |n, &b| (n << 8) | usize::from(b))
    }

    /// The prefix for a string of `length` bytes.
    fn encode_prefix(length: usize) -> Result<[u8; 8], StringTooLong> {
        match u64::try_from(length) {
            Ok(n) if n <= Self::PREFIX_MAX => Ok(n.to_be_bytes()),
            _ => Err(StringTooLong {
                length,
                max: usize::try_from(Self::PREFIX_MAX).unwrap_or(usize::MAX),
                prefix_bytes: BYTES,
            }),
        }
    }

    fn fail(&mut self, chunk: &[u8], pos: &mut usize, length: usize) -> StringEvent<'static> {
        self.failed = true;
        self.buf = RecvBuffer::default();
        *pos = chunk.len();
        StringEvent::LengthLimitExceeded(length)
    }

    /// Copies from `chunk` until the buffer holds `target` bytes or `chunk` runs out.
    fn fill(&mut self, chunk: &[u8], pos: &mut usize, target: usize) -> bool {
        let take = target
            .saturating_sub(self.buf.len())
            .min(chunk.len() - *pos);
        self.buf.extend(&chunk[*pos..*pos + take]);
        *pos += take;
        self.buf.len() >= target
    }
}

impl<const BYTES: usize> sealed::Sealed for IntNStringParser<BYTES> {}

impl<const BYTES: usize> StringFraming for IntNStringParser<BYTES> {
    fn max_length(&self) -> usize {
        self.max_length
    }

    fn set_max_length(&mut self, max_length: usize) {
        self.max_length = max_length;
    }

    fn feed(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend(data);
        }
    }

    fn next_event_in<'a>(
        &'a mut self,
        chunk: &'a [u8],
        pos: &mut usize,
    ) -> Option<StringEvent<'a>> {
        self.buf.release_if_idle();
        if self.failed {
            *pos = chunk.len();
            return None;
        }
        if self.buf.is_empty() {
            let rest = &chunk[*pos..];
            if rest.len() >= BYTES {
                let length = Self::prefix(rest);
                if length > self.max_length {
                    return Some(self.fail(chunk, pos, length));
                }
                if rest.len() - BYTES >= length {
                    let start = *pos + BYTES;
                    *pos = start + length;
                    return Some(StringEvent::String(&chunk[start..start + length]));
                }
            }
            self.buf.extend(rest);
            *pos = chunk.len();
            return None;
        }
        if !self.fill(chunk, pos, BYTES) {
            return None;
        }
        let length = Self::prefix(self.buf.as_slice());
        if length > self.max_length {
            return Some(self.fail(chunk, pos, length));
        }
        let total = length.saturating_add(BYTES);
        if !self.fill(chunk, pos, total) {
            return None;
        }
        let start = self.buf.range().start;
        self.buf.consume(total);
        Some(StringEvent::String(
            self.buf.slice(start + BYTES..start + total),
        ))
    }

    fn write_string(transport: &mut dyn Transport, string: &[u8]) -> Result<(), StringTooLong> {
        let prefix = Self::encode_prefix(string.len())?;
        transport.write_vectored(&[&prefix[8 - BYTES..], string]);
        Ok(())
    }

    fn encode(string: &[u8]) -> Result<Vec<u8>, StringTooLong> {
        let prefix = Self::encode_prefix(string.len())?;
        let mut out = Vec::with_capacity(BYTES + string.len());
        out.extend_from_slice(&prefix[8 - BYTES..]);
        out.extend_from_slice(string);
        Ok(out)
    }
}
