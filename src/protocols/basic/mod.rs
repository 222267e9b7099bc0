//! Framing protocols: lines, netstrings and length-prefixed strings (Twisted's
//! `twisted.protocols.basic`).
//!
//! | Twisted | torsion |
//! | --- | --- |
//! | `LineReceiver` | [`LineReceiver`] over a [`LineHandler`]; framing in [`LineParser`] |
//! | `LineOnlyReceiver` | [`LineOnlyReceiver`] over a [`LineOnlyHandler`]; [`LineOnlyParser`] |
//! | `NetstringReceiver` | [`NetstringReceiver`] over a [`StringHandler`]; [`NetstringParser`] |
//! | `Int8/16/32StringReceiver` | [`Int8StringReceiver`], [`Int16StringReceiver`], [`Int32StringReceiver`] over a [`StringHandler`]; [`IntNStringParser`] |
//! | `StringTooLongError` | [`StringTooLong`] |
//! | `NetstringParseError` | [`NetstringError`] |
//!
//! You implement a small trait ([`LineHandler::line_received`],
//! [`StringHandler::string_received`], …) and wrap it in a receiver, which is the
//! [`Protocol`](crate::Protocol). Each callback gets a context ([`LineCx`], [`LineOnlyCx`],
//! [`StringCx`]) that dereferences to the connection's [`Cx`](crate::Cx) and adds the
//! receiver's controls: `send_line` / `send_string`, mode switches, `clear_line_buffer`,
//! pause and resume, the limits.
//!
//! The framing itself lives in parsers that know nothing of transports or reactors: feed
//! them bytes, take events out. They are what the property tests and the fuzz targets under
//! `fuzz/` drive.
//!
//! ```
//! use torsion::protocols::basic::{LineCx, LineHandler, LineReceiver};
//! use torsion::testing::StringTransport;
//! use torsion::{Cx, Protocol, Reactor};
//!
//! struct Echo;
//! impl LineHandler for Echo {
//!     fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
//!         cx.send_line(line);
//!     }
//! }
//!
//! let reactor = Reactor::new()?;
//! let mut t = StringTransport::new();
//! let mut p = LineReceiver::new(Echo);
//! let cx = &mut Cx::new(&mut t, &reactor);
//! p.data_received(cx, b"hel");
//! p.data_received(cx, b"lo\r\nworld\r\n");
//! assert_eq!(t.value(), b"hello\r\nworld\r\n");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Rules kept from Twisted
//!
//! - `LineReceiver`: a line of exactly `max_length` bytes is accepted; a longer one followed by
//!   the delimiter is exceeded; an unterminated buffer is exceeded at `max_length +
//!   delimiter.len()` bytes, so a partial delimiter at the limit is not (`"x"*16384 + "\r"`).
//!   [`LineHandler::line_length_exceeded`] gets every pending byte and closes the connection
//!   gracefully by default. `set_raw_mode` and `set_line_mode(extra)` take effect for the
//!   rest of the chunk being parsed; `extra` is parsed after everything already buffered.
//!   `clear_line_buffer` drops the lines still pending in the chunk. Pausing stops delivery
//!   mid-chunk; resuming delivers what was buffered. `send_line` writes the line and the
//!   delimiter.
//! - `LineOnlyReceiver` keeps its own length rule (see [`LineOnlyParser`]): a complete line
//!   longer than the maximum is exceeded alone and the complete lines after it in the same
//!   read are dropped; an unterminated tail is exceeded at `max_length + 1` bytes.
//! - Netstrings: leading zeros are refused, errors are found as early as the bytes allow, the
//!   trailing comma is checked, and a broken peer is closed and never parsed again.
//! - Length prefixes: `length_limit_exceeded` comes as soon as the prefix is complete; a
//!   string of exactly the maximum is accepted; `send_string` refuses what the prefix cannot
//!   express (255 bytes for Int8, 65535 for Int16).
//!
//! # Deliberate differences from Twisted
//!
//! - **O(n) parsing.** Twisted re-slices the whole buffer for every line, so one large chunk
//!   costs O(n²). Here every byte is searched once, complete lines and strings are handed out
//!   as slices of the read buffer without a copy, and only an incomplete message at the end of
//!   a read is buffered. The buffer is compacted lazily, at amortized O(1) per byte, and an
//!   empty buffer larger than 4 KiB is freed, so an idle connection holds no large buffer.
//! - **Bytes handed back from `line_length_exceeded` are parsed at once.** Twisted returns
//!   from `dataReceived` after calling `lineLengthExceeded`, so what it feeds back with
//!   `setLineMode(extra)` waits for the next read. Here parsing goes on unless the transport is
//!   closing (the default handler closes it).
//! - **Bounded stack depth.** Mode flips are applied by the parsing loop after each callback
//!   returns; no callback re-enters `data_received`, so any number of flips uses constant
//!   stack. `set_line_mode(tail)` with a tail of the raw data just received does not copy it.
//! - **Nothing is delivered once the transport is closing.** Twisted's `LineReceiver` checks
//!   `transport.disconnecting` only after each line (so a read that arrives while closing still
//!   delivers its first line, and raw data is never checked), and its `NetstringReceiver` and
//!   `IntNStringReceiver` never check: the rest of a read is delivered after
//!   `loseConnection()`. Here every receiver checks before each callback.
//! - **A length prefix above the maximum ends parsing for good.** Twisted re-parses the same
//!   buffer on the next read (calling `lengthLimitExceeded` again, after delivering the strings
//!   before it once more) if the handler did not close the connection.
//! - **Netstring and length-prefixed receivers can pause** through [`StringCx`] (Twisted's
//!   `NetstringReceiver` has no pause).
//! - Callbacks return nothing: Twisted's "return a true value from `lineReceived` to stop" is
//!   deprecated there. Close or pause the transport instead.
//! - `raw_data_received` drops data by default instead of raising `NotImplementedError`.
//! - `send_line` and `send_string` write the framing and the payload with one vectored write
//!   rather than concatenating them first; the bytes on the wire are the same.
//! - A netstring length followed by a newline (`"12\n"`) is refused at once; Twisted's regex
//!   lets it wait for the next byte.
//! - Not provided: the legacy `IntNStringReceiver.recvd` attribute, `StatefulStringProtocol`
//!   and `FileSender`.
//!
//! # Ported Twisted tests
//!
//! From `twisted/protocols/test/test_basic.py`, in `src/protocols/basic/tests/`:
//! - `LineReceiverTests`: `test_buffer`, `test_pausing`, `test_rawPausing` and
//!   `test_stopProducing` over every chunk size from 1 to 9 (and `test_buffer` over every
//!   larger size, which Twisted fails), `test_clearLineBuffer`, `test_stackRecursion`,
//!   `test_maximumLineLength`, `test_maximumLineLengthPartialDelimiter`,
//!   `test_notQuiteMaximumLineLengthUnfinished`, and `test_rawDataError` recast as a raw
//!   handler that closes the connection;
//! - `LineReceiverLineLengthExceededTests`: all six;
//! - `ProducerTests.test_pauseResume`;
//! - `LineOnlyReceiverTests`: `test_buffer`, `test_greaterThanMaximumLineLength`;
//! - `NetstringReceiverTests`: `test_buffer`, `test_illegal`, every receive, portion, border
//!   and limit case, `_consumeLength`'s border cases driven through the parser;
//! - `Int8Tests`, `Int16Tests`, `Int32Tests`: `test_receive`, `test_partial`, `test_send`,
//!   `test_lengthLimitExceeded`, `test_longStringNotDelivered`, `test_data`,
//!   `test_tooLongSend`, `test_illegal`.
//!
//! Not ported: the `recvd` tests (the attribute is not provided), `test_lineReceiverAsProducer`
//! (a protocol cannot register itself as its transport's producer) and the
//! `NotImplementedError` tests (the callbacks are trait methods).
//!
//! Property tests run [`LineReceiver`] and [`LineOnlyReceiver`] beside a transcription of
//! Twisted's algorithm under a handler that switches modes, feeds bytes back, clears, pauses,
//! changes the delimiter and the limit, and closes; the string framings are checked against
//! the netstring definition, by round trip, and for independence from chunking.

mod buffer;
mod int_string;
mod line_only;
mod line_parser;
mod line_receiver;
mod netstring;
mod splitter;
mod string_receiver;

#[cfg(test)]
mod tests;

pub use int_string::{Int8StringParser, Int16StringParser, Int32StringParser, IntNStringParser};
pub use line_only::{LineOnlyCx, LineOnlyHandler, LineOnlyParser, LineOnlyReceiver};
pub use line_parser::{LineEvent, LineParser};
pub use line_receiver::{LineCx, LineHandler, LineReceiver};
pub use netstring::{NetstringError, NetstringParser};
pub use string_receiver::{
    Int8StringReceiver, Int16StringReceiver, Int32StringReceiver, IntNStringReceiver,
    NetstringReceiver, StringCx, StringEvent, StringFraming, StringHandler, StringReceiver,
    StringTooLong,
};
