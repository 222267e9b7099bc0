//! [`NetstringParser`]: netstrings (`<length>:<payload>,`) as a plain state machine.

use super::buffer::RecvBuffer;
use super::string_receiver::{StringEvent, StringFraming, StringTooLong, sealed};
use crate::Transport;

/// Why a netstring was refused (the messages of Twisted's `NetstringParseError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetstringError {
    /// The input does not start with a length: a byte other than a digit or the colon, a
    /// colon with no digit before it, or a leading zero (`01:a,`).
    #[error("the received netstring does not start with a length specification")]
    MissingLength,
    /// The length is above the maximum; found as soon as the digits received say so, before
    /// the colon.
    #[error("the received netstring is longer than the maximum {max}")]
    TooLong {
        /// The maximum in force.
        max: usize,
    },
    /// The byte after the payload is not a comma.
    #[error("the received netstring is not terminated by a comma")]
    MissingComma,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the length; `digits` tells whether one was read yet.
    Length { value: usize, digits: bool },
    /// Waiting for the payload and its comma.
    Payload { length: usize },
    /// The peer broke the format; nothing more is parsed.
    Broken(NetstringError),
}

const START: State = State::Length {
    value: 0,
    digits: false,
};

/// Netstring framing without a transport (Twisted's `NetstringReceiver` parser).
///
/// - The length matches `0|[1-9][0-9]*`: leading zeros, signs and spaces are refused.
/// - Errors are found as early as the bytes allow: `aaa` fails on its first byte, and a length
///   fails as soon as its digits exceed the maximum (99999 by default), colon or not.
/// - The byte after the payload must be `,`.
/// - After an error the parser is broken for good: it yields
///   [`StringEvent::Malformed`] once, then nothing.
///
/// ```
/// use torsion::protocols::basic::{NetstringError, NetstringParser, StringEvent, StringFraming};
///
/// let mut p = NetstringParser::default();
/// p.feed(b"5:hello,0:,");
/// assert_eq!(p.next_event(), Some(StringEvent::String(b"hello")));
/// assert_eq!(p.next_event(), Some(StringEvent::String(b"")));
/// p.feed(b"01:a,");
/// assert_eq!(p.next_event(), Some(StringEvent::Malformed(NetstringError::MissingLength)));
/// assert_eq!(p.next_event(), None);
/// assert!(p.is_broken());
/// ```
#[derive(Clone, Debug)]
pub struct NetstringParser {
    buf: RecvBuffer,
    state: State,
    max_length: usize,
}

impl Default for NetstringParser {
    fn default() -> Self {
        NetstringParser {
            buf: RecvBuffer::default(),
            state: START,
            max_length: Self::DEFAULT_MAX_LENGTH,
        }
    }
}

impl NetstringParser {
    /// Twisted's default `MAX_LENGTH`.
    pub const DEFAULT_MAX_LENGTH: usize = 99999;

    /// True once the input broke the format (Twisted's `brokenPeer`).
    pub fn is_broken(&self) -> bool {
        self.error().is_some()
    }

    /// What broke the format, if anything did.
    pub fn error(&self) -> Option<NetstringError> {
        match self.state {
            State::Broken(e) => Some(e),
            _ => None,
        }
    }

    fn fail(
        &mut self,
        chunk: &[u8],
        pos: &mut usize,
        error: NetstringError,
    ) -> StringEvent<'static> {
        self.state = State::Broken(error);
        self.buf = RecvBuffer::default();
        *pos = chunk.len();
        StringEvent::Malformed(error)
    }

    /// Takes one byte, from the buffer first.
    fn next_byte(&mut self, chunk: &[u8], pos: &mut usize) -> Option<u8> {
        if let Some(&b) = self.buf.as_slice().first() {
            self.buf.consume(1);
            Some(b)
        } else if let Some(&b) = chunk.get(*pos) {
            *pos += 1;
            Some(b)
        } else {
            None
        }
    }
}

impl sealed::Sealed for NetstringParser {}

impl StringFraming for NetstringParser {
    fn max_length(&self) -> usize {
        self.max_length
    }

    fn set_max_length(&mut self, max_length: usize) {
        self.max_length = max_length;
    }

    fn feed(&mut self, data: &[u8]) {
        if !self.is_broken() {
            self.buf.extend(data);
        }
    }

    fn next_event_in<'a>(
        &'a mut self,
        chunk: &'a [u8],
        pos: &mut usize,
    ) -> Option<StringEvent<'a>> {
        self.buf.release_if_idle();
        loop {
            match self.state {
                State::Broken(_) => {
                    *pos = chunk.len();
                    return None;
                }
                State::Length { value, digits } => {
                    let byte = self.next_byte(chunk, pos)?;
                    self.state = match byte {
                        b'0'..=b'9' if digits && value == 0 => {
                            return Some(self.fail(chunk, pos, NetstringError::MissingLength));
                        }
                        b'0'..=b'9' => {
                            let value = value
                                .checked_mul(10)
                                .and_then(|v| v.checked_add(usize::from(byte - b'0')))
                                .filter(|&v| v <= self.max_length);
                            let Some(value) = value else {
                                let max = self.max_length;
                                return Some(self.fail(
                                    chunk,
                                    pos,
                                    NetstringError::TooLong { max },
                                ));
                            };
                            State::Length {
                                value,
                                digits: true,
                            }
                        }
                        b':' if digits => State::Payload { length: value },
                        _ => return Some(self.fail(chunk, pos, NetstringError::MissingLength)),
                    };
                }
                State::Payload { length } => {
                    let need = length.saturating_add(1);
                    if self.buf.is_empty() {
                        let rest = &chunk[*pos..];
                        if rest.len() < need {
                            self.buf.extend(rest);
                            *pos = chunk.len();
                            return None;
                        }
                        let start = *pos;
                        *pos += need;
                        if rest[length] != b',' {
                            return Some(self.fail(chunk, pos, NetstringError::MissingComma));
                        }
                        self.state = START;
                        return Some(StringEvent::String(&chunk[start..start + length]));
                    }
                    let take = need.saturating_sub(self.buf.len()).min(chunk.len() - *pos);
                    self.buf.extend(&chunk[*pos..*pos + take]);
                    *pos += take;
                    if self.buf.len() < need {
                        return None;
                    }
                    let start = self.buf.range().start;
                    self.buf.consume(need);
                    if self.buf.slice(start..start + need)[length] != b',' {
                        return Some(self.fail(chunk, pos, NetstringError::MissingComma));
                    }
                    self.state = START;
                    return Some(StringEvent::String(self.buf.slice(start..start + length)));
                }
            }
        }
    }

    fn write_string(transport: &mut dyn Transport, string: &[u8]) -> Result<(), StringTooLong> {
        let mut digits = [0; 20];
        let digits = format_len(string.len(), &mut digits);
        transport.write_vectored(&[digits, b":", string, b","]);
        Ok(())
    }

    fn encode(string: &[u8]) -> Result<Vec<u8>, StringTooLong> {
        let mut digits = [0; 20];
        let digits = format_len(string.len(), &mut digits);
        let mut out = Vec::with_capacity(digits.len() + string.len() + 2);
        out.extend_from_slice(digits);
        out.push(b':');
        out.extend_from_slice(string);
        out.push(b',');
        Ok(out)
    }
}

/// Decimal digits of `n`, without allocating.
fn format_len(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}
