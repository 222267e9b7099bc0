//! Twisted's `LineReceiverTests`, `LineReceiverLineLengthExceededTests` and `ProducerTests`.

use super::Harness;
use crate::protocols::basic::{LineCx, LineHandler, LineReceiver};
use crate::testing::ProducerState;

/// Twisted's `LineTester`: delimiter `\n`, MAX_LENGTH 64, and actions on some lines. Its
/// `pause` schedules `resumeProducing` on a clock; here the test resumes by hand.
#[derive(Default)]
pub(super) struct LineTester {
    pub received: Vec<Vec<u8>>,
    length: usize,
}

impl LineHandler for LineTester {
    fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
        self.received.push(line.to_vec());
        if line.is_empty() {
            cx.set_raw_mode();
        } else if line == b"pause" {
            cx.pause_producing();
        } else if line == b"rawpause" {
            cx.pause_producing();
            cx.set_raw_mode();
            self.received.push(Vec::new());
        } else if line == b"stop" {
            cx.stop_producing();
        } else if let Some(n) = line.strip_prefix(b"len ") {
            self.length = std::str::from_utf8(n).unwrap().parse().unwrap();
        }
    }

    fn raw_data_received(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
        let (data, rest) = data.split_at(self.length.min(data.len()));
        self.length -= data.len();
        self.received.last_mut().unwrap().extend_from_slice(data);
        if self.length == 0 {
            cx.set_line_mode(rest);
        }
    }

    fn line_length_exceeded(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
        let max = cx.max_length();
        if line.len() > max + 1 {
            cx.set_line_mode(&line[max + 1..]);
        }
    }
}

pub(super) fn line_tester() -> Harness<LineReceiver<LineTester>> {
    Harness::new(
        LineReceiver::new(LineTester::default())
            .with_delimiter(b"\n")
            .with_max_length(64),
    )
}

const BUFFER: &[u8] = b"len 10

0123456789len 5

1234
len 20
foo 123

0123456789
012345678len 0
foo 5

1234567890123456789012345678901234567890123456789012345678901234567890
len 1

a";

const OUTPUT: &[&[u8]] = &[
    b"len 10",
    b"0123456789",
    b"len 5",
    b"1234\n",
    b"len 20",
    b"foo 123",
    b"0123456789\n012345678",
    b"len 0",
    b"foo 5",
    b"",
    b"67890",
    b"len 1",
    b"a",
];

#[test]
fn test_buffer() {
    for size in 1..10 {
        let mut h = line_tester();
        h.feed_in_chunks(BUFFER, size);
        assert_eq!(h.p.handler().received, OUTPUT, "chunks of {size}");
    }
}

/// Twisted passes `test_buffer` only with small chunks: the bytes its `LineTester` feeds back
/// from `lineLengthExceeded` wait for the next `dataReceived`. Here they are parsed at once,
/// so any chunking works, one chunk included.
#[test]
fn test_buffer_with_any_chunk_size() {
    for size in 10..=BUFFER.len() {
        let mut h = line_tester();
        h.feed_in_chunks(BUFFER, size);
        assert_eq!(h.p.handler().received, OUTPUT, "chunks of {size}");
    }
}

#[test]
fn test_pausing() {
    let buf = b"twiddle1\ntwiddle2\npause\ntwiddle3\n";
    let out1: &[&[u8]] = &[b"twiddle1", b"twiddle2", b"pause"];
    let out2: &[&[u8]] = &[b"twiddle1", b"twiddle2", b"pause", b"twiddle3"];
    for size in 1..10 {
        let mut h = line_tester();
        h.feed_in_chunks(buf, size);
        assert_eq!(h.p.handler().received, out1, "chunks of {size}");
        assert_eq!(h.t.producer_state(), ProducerState::Paused);
        h.with_cx(|p, cx| p.resume_producing(cx));
        assert_eq!(h.p.handler().received, out2, "chunks of {size}");
        assert_eq!(h.t.producer_state(), ProducerState::Producing);
    }
}

#[test]
fn test_raw_pausing() {
    let buf = b"twiddle1\ntwiddle2\nlen 5\nrawpause\n12345twiddle3\n";
    let out1: &[&[u8]] = &[b"twiddle1", b"twiddle2", b"len 5", b"rawpause", b""];
    let out2: &[&[u8]] = &[
        b"twiddle1",
        b"twiddle2",
        b"len 5",
        b"rawpause",
        b"12345",
        b"twiddle3",
    ];
    for size in 1..10 {
        let mut h = line_tester();
        h.feed_in_chunks(buf, size);
        assert_eq!(h.p.handler().received, out1, "chunks of {size}");
        h.with_cx(|p, cx| p.resume_producing(cx));
        assert_eq!(h.p.handler().received, out2, "chunks of {size}");
    }
}

#[test]
fn test_stop_producing() {
    let buf = b"twiddle1\ntwiddle2\nstop\nmore\nstuff\n";
    let out: &[&[u8]] = &[b"twiddle1", b"twiddle2", b"stop"];
    for size in 1..10 {
        let mut h = line_tester();
        h.feed_in_chunks(buf, size);
        assert_eq!(h.p.handler().received, out, "chunks of {size}");
        assert_eq!(h.t.producer_state(), ProducerState::Stopped);
        assert!(h.p.is_paused());
    }
}

#[derive(Default)]
struct ClearingReceiver {
    line: Vec<u8>,
    rest: Vec<u8>,
}

impl LineHandler for ClearingReceiver {
    fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
        self.line = line.to_vec();
        self.rest = cx.clear_line_buffer();
    }
}

#[test]
fn test_clear_line_buffer() {
    let mut h = Harness::new(LineReceiver::new(ClearingReceiver::default()));
    h.feed(b"foo\r\nbar\r\nbaz");
    assert_eq!(h.p.handler().line, b"foo");
    assert_eq!(h.p.handler().rest, b"bar\r\nbaz");
    h.feed(b"quux\r\n");
    assert_eq!(h.p.handler().line, b"quux");
    assert_eq!(h.p.handler().rest, b"");
}

/// Twisted's `FlippingLineTester`: raw mode after each line, line mode again after one byte.
#[derive(Default)]
struct FlippingLineTester {
    lines: Vec<u8>,
}

impl LineHandler for FlippingLineTester {
    fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
        self.lines.extend_from_slice(line);
        cx.set_raw_mode();
    }

    fn raw_data_received(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
        cx.set_line_mode(&data[1..]);
    }
}

#[test]
fn test_stack_recursion() {
    // Twisted uses the recursion limit (1000); the loop does not care.
    let limit = 100_000;
    let mut h =
        Harness::new(LineReceiver::new(FlippingLineTester::default()).with_delimiter(b"\n"));
    h.feed(&b"x\nx".repeat(limit));
    assert_eq!(h.p.handler().lines, b"x".repeat(limit));
}

struct Ignore;
impl LineHandler for Ignore {
    fn line_received(&mut self, _: &mut LineCx<'_, '_>, _: &[u8]) {}
}

#[test]
fn test_maximum_line_length() {
    let mut h = Harness::new(LineReceiver::new(Ignore));
    let mut data = vec![b'x'; 16384 + 1];
    data.extend_from_slice(b"\r\nr");
    h.feed(&data);
    assert!(h.t.disconnecting());
}

#[test]
fn test_maximum_line_length_partial_delimiter() {
    let mut h = Harness::new(
        LineReceiver::new(LineTester::default())
            .with_delimiter(b"\n")
            .with_max_length(4),
    );
    h.feed(b"xxx");
    h.feed(b"");
    h.feed(b"\nxxx");
    assert!(!h.t.disconnecting());
    assert_eq!(h.p.handler().received, [b"xxx"]);
}

/// §2.1's form of the same case, with `\r\n` (LR-11).
#[test]
fn partial_delimiter_at_the_limit_with_crlf() {
    let mut h = Harness::new(LineReceiver::new(LineTester::default()).with_max_length(4));
    h.feed(b"xxxx");
    h.feed(b"\r");
    h.feed(b"\nxxxx");
    assert!(!h.t.disconnecting());
    assert_eq!(h.p.handler().received, [b"xxxx"]);

    let mut h = Harness::new(LineReceiver::new(Ignore).with_max_length(4));
    h.feed(b"xxxxx");
    assert!(!h.t.disconnecting());
    h.feed(b"\r");
    assert!(
        h.t.disconnecting(),
        "6 unterminated bytes reach MAX + len(delimiter)"
    );
}

#[test]
fn test_not_quite_maximum_line_length_unfinished() {
    let mut h = Harness::new(LineReceiver::new(Ignore));
    let mut data = vec![b'x'; 16384];
    data.push(b'\r');
    h.feed(&data);
    assert!(!h.t.disconnecting());
    h.feed(b"x");
    assert!(h.t.disconnecting(), "16386 bytes without a delimiter");
}

/// `test_rawDataError`'s point, without return values: a raw handler can stop delivery.
#[test]
fn raw_handler_that_closes_stops_delivery() {
    struct CloseOnRaw(Vec<Vec<u8>>);
    impl LineHandler for CloseOnRaw {
        fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
            self.0.push(line.to_vec());
            cx.set_raw_mode();
        }
        fn raw_data_received(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
            cx.transport().lose_connection();
            cx.set_line_mode(data);
        }
    }
    let mut h = Harness::new(LineReceiver::new(CloseOnRaw(Vec::new())));
    h.feed(b"a\r\nb\r\nc\r\n");
    assert_eq!(h.p.handler().0, [b"a"]);
    assert_eq!(h.p.parser().pending(), b"b\r\nc\r\n");
}

/// Twisted's `ExcessivelyLargeLineCatcher`.
#[derive(Default)]
struct Catcher {
    long_lines: Vec<Vec<u8>>,
}

impl LineHandler for Catcher {
    fn line_received(&mut self, _: &mut LineCx<'_, '_>, _: &[u8]) {}
    fn line_length_exceeded(&mut self, _: &mut LineCx<'_, '_>, data: &[u8]) {
        self.long_lines.push(data.to_vec());
    }
}

fn catcher() -> Harness<LineReceiver<Catcher>> {
    Harness::new(LineReceiver::new(Catcher::default()).with_max_length(6))
}

#[test]
fn test_long_unended_line() {
    let mut h = catcher();
    let excessive = vec![b'x'; 6 * 2 + 2];
    h.feed(&excessive);
    assert_eq!(h.p.handler().long_lines, [excessive]);
}

#[test]
fn test_long_line_after_short_line() {
    let mut h = catcher();
    let excessive = vec![b'x'; 6 * 2 + 2];
    h.feed(&[b"x\r\n".as_slice(), &excessive].concat());
    assert_eq!(h.p.handler().long_lines, [excessive]);
}

#[test]
fn test_long_line_with_delimiter() {
    let mut h = catcher();
    let long = vec![b'x'; 6 * 2 + 2];
    let excessive = [&long[..], b"\r\n", &long].concat();
    h.feed(&excessive);
    assert_eq!(h.p.handler().long_lines, [excessive]);
}

#[test]
fn test_multiple_long_lines() {
    let mut h = catcher();
    let long = [&[b'x'; 6 * 2 + 2][..], b"\r\n"].concat();
    let excessive = long.repeat(2);
    h.feed(&excessive);
    assert_eq!(h.p.handler().long_lines, [excessive]);
}

#[test]
fn test_maximum_line_length_remaining() {
    let mut h = Harness::new(LineReceiver::new(Ignore));
    h.feed(&[b'x'; 16384 + 2]);
    assert!(h.t.disconnecting());
}

/// Twisted's `ConsumingProtocol`: echoes each line, then pauses (case LR-13).
struct Consuming;
impl LineHandler for Consuming {
    fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
        cx.transport().write(line);
        cx.transport().write(b"|");
        cx.pause_producing();
    }
}

#[test]
fn test_pause_resume() {
    let mut h = Harness::new(LineReceiver::new(Consuming));
    let paused = |h: &Harness<LineReceiver<Consuming>>| {
        let t = h.t.producer_state() == ProducerState::Paused;
        assert_eq!(t, h.p.is_paused());
        t
    };

    h.feed(b"hello, ");
    assert_eq!(h.t.value(), b"");
    assert!(!paused(&h));

    h.feed(b"world\r\n");
    assert_eq!(h.t.value(), b"hello, world|");
    assert!(paused(&h));

    h.with_cx(|p, cx| p.resume_producing(cx));
    assert_eq!(h.t.value(), b"hello, world|");
    assert!(!paused(&h));

    h.feed(b"hello\r\nworld\r\n");
    assert_eq!(h.t.value(), b"hello, world|hello|");
    assert!(paused(&h));

    h.with_cx(|p, cx| p.resume_producing(cx));
    assert_eq!(h.t.value(), b"hello, world|hello|world|");
    assert!(paused(&h));

    h.feed(b"goodbye\r\n");
    assert_eq!(h.t.value(), b"hello, world|hello|world|");
    assert!(paused(&h));

    h.with_cx(|p, cx| p.resume_producing(cx));
    assert_eq!(h.t.value(), b"hello, world|hello|world|goodbye|");
    assert!(paused(&h));

    h.with_cx(|p, cx| p.resume_producing(cx));
    assert_eq!(h.t.value(), b"hello, world|hello|world|goodbye|");
    assert!(!paused(&h));
}
