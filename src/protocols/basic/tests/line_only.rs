//! Twisted's `LineOnlyReceiverTests`, and §2.2's length rule.

use super::Harness;
use crate::protocols::basic::{
    LineEvent, LineOnlyCx, LineOnlyHandler, LineOnlyParser, LineOnlyReceiver,
};

/// Twisted's `LineOnlyTester` (delimiter `\n`, MAX_LENGTH 64), logging long lines too. Lines
/// starting with `X` close the connection; `keep_open` makes long lines leave it open.
#[derive(Default)]
struct Tester {
    received: Vec<Vec<u8>>,
    long: Vec<Vec<u8>>,
    keep_open: bool,
}

impl LineOnlyHandler for Tester {
    fn line_received(&mut self, cx: &mut LineOnlyCx<'_, '_>, line: &[u8]) {
        self.received.push(line.to_vec());
        if line.starts_with(b"X") {
            cx.transport().lose_connection();
        }
    }

    fn line_length_exceeded(&mut self, cx: &mut LineOnlyCx<'_, '_>, line: &[u8]) {
        self.long.push(line.to_vec());
        if !self.keep_open {
            cx.transport().lose_connection();
        }
    }
}

fn tester(max: usize, keep_open: bool) -> Harness<LineOnlyReceiver<Tester>> {
    let handler = Tester {
        keep_open,
        ..Tester::default()
    };
    Harness::new(
        LineOnlyReceiver::new(handler)
            .with_delimiter(b"\n")
            .with_max_length(max),
    )
}

#[test]
fn test_buffer() {
    let buffer = b"foo
    bleakness
    desolation
    plastic forks
    ";
    let mut h = tester(64, false);
    h.feed_bytewise(buffer);
    let expected: Vec<&[u8]> = buffer.split(|&b| b == b'\n').collect();
    assert_eq!(h.p.handler().received, expected[..expected.len() - 1]);
}

#[test]
fn test_greater_than_maximum_line_length() {
    let mut h = tester(64, false);
    let mut data = vec![b'x'; 64 + 1 + 1];
    data.extend_from_slice(b"\r\nr");
    h.feed(&data);
    assert!(h.t.disconnecting());
}

#[test]
fn an_unterminated_tail_is_exceeded_one_byte_past_the_maximum() {
    let mut h = tester(4, false);
    h.feed(b"abcd");
    assert!(!h.t.disconnecting());
    h.feed(b"e");
    assert!(
        h.t.disconnecting(),
        "LineReceiver would wait for a 6th byte"
    );
    assert_eq!(h.p.handler().long, [b"abcde"]);
}

#[test]
fn a_long_line_is_exceeded_alone_and_the_complete_lines_after_it_are_dropped() {
    let mut h = tester(4, true);
    h.feed(b"ok\ntoolong\nnext\nlast\npart");
    assert_eq!(h.p.handler().received, [b"ok"]);
    assert_eq!(h.p.handler().long, [b"toolong"]);
    assert_eq!(h.p.parser().pending(), b"part");
    h.feed(b"\nmore\n");
    assert_eq!(h.p.handler().received, [&b"ok"[..], b"part", b"more"]);
}

#[test]
fn a_long_tail_stays_buffered_and_is_reported_again() {
    let mut h = tester(4, true);
    h.feed(b"abcde");
    h.feed(b"f");
    assert_eq!(h.p.handler().long, [&b"abcde"[..], b"abcdef"]);
    h.feed(b"\nok\n");
    assert_eq!(h.p.handler().long, [&b"abcde"[..], b"abcdef", b"abcdef"]);
    assert!(
        h.p.handler().received.is_empty(),
        "lines after a long one are dropped"
    );
    h.feed(b"ok\n");
    assert_eq!(h.p.handler().received, [b"ok"]);
}

#[test]
fn nothing_is_delivered_once_closing() {
    let mut h = tester(64, false);
    h.feed(b"a\nXclose\nb\nc\n");
    assert_eq!(h.p.handler().received, [&b"a"[..], b"Xclose"]);
    h.feed(b"d\n");
    assert_eq!(h.p.handler().received.len(), 2);
}

#[test]
fn send_line_writes_line_then_delimiter() {
    struct Echo;
    impl LineOnlyHandler for Echo {
        fn line_received(&mut self, cx: &mut LineOnlyCx<'_, '_>, line: &[u8]) {
            assert_eq!(cx.delimiter(), b"\r\n");
            cx.send_line(line);
        }
    }
    let mut h = Harness::new(LineOnlyReceiver::new(Echo));
    h.feed(b"one\r\ntw");
    h.feed(b"o\r\n");
    assert_eq!(h.t.value(), b"one\r\ntwo\r\n");
}

#[test]
fn the_parser_splits_like_python() {
    let mut p = LineOnlyParser::new().with_delimiter(b"aa");
    p.feed(b"xaaaay");
    assert_eq!(p.next_event(), Some(LineEvent::Line(b"x")));
    assert_eq!(p.next_event(), Some(LineEvent::Line(b"")));
    assert_eq!(p.next_event(), None);
    assert_eq!(p.pending(), b"y");
}
