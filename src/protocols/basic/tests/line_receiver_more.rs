//! `LineReceiver` cases beyond Twisted's suite: §2.1's rules one by one, and the deliberate
//! differences.

use std::time::Instant;

use super::{Harness, chunks};
use crate::Reason;
use crate::protocols::basic::{LineCx, LineHandler, LineReceiver};

/// Logs every callback; acts on lines by their first word.
#[derive(Default)]
struct Script {
    log: Vec<String>,
}

fn show(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

impl LineHandler for Script {
    fn connection_made(&mut self, cx: &mut LineCx<'_, '_>) {
        cx.send_line(b"hello");
        self.log.push("made".into());
    }

    fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
        self.log.push(format!("line {}", show(line)));
        match line {
            b"RAW" => cx.set_raw_mode(),
            b"REFEED" => cx.set_line_mode(b"fed\r\n"),
            b"CLEAR" => {
                let rest = cx.clear_line_buffer();
                self.log.push(format!("cleared {}", show(&rest)));
            }
            b"CF" => {
                cx.clear_line_buffer();
                cx.set_line_mode(b"after\r\n");
            }
            b"FC" => {
                cx.set_line_mode(b"lost\r\n");
                let rest = cx.clear_line_buffer();
                self.log.push(format!("cleared {}", show(&rest)));
            }
            b"CLOSE" => cx.transport().lose_connection(),
            b"LF" => cx.set_delimiter(b"\n"),
            b"MAX2" => cx.set_max_length(2),
            _ => {}
        }
    }

    fn raw_data_received(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
        self.log.push(format!("raw {}", show(data)));
        if let Some(i) = data.iter().position(|&b| b == b'|') {
            cx.set_line_mode(&data[i + 1..]);
        }
    }

    fn line_length_exceeded(&mut self, _: &mut LineCx<'_, '_>, data: &[u8]) {
        self.log.push(format!("long {}", show(data)));
    }

    fn connection_lost(&mut self, _: &mut LineCx<'_, '_>, reason: Reason) {
        self.log.push(format!("lost {}", reason.is_clean()));
    }
}

fn script() -> Harness<LineReceiver<Script>> {
    Harness::new(LineReceiver::new(Script::default()).with_max_length(8))
}

fn log(h: &Harness<LineReceiver<Script>>) -> Vec<String> {
    h.p.handler().log[1..].to_vec()
}

#[test]
fn connection_made_can_send_lines_and_connection_lost_is_passed_on() {
    let mut h = script();
    assert_eq!(h.t.value(), b"hello\r\n");
    h.lose(Reason::ConnectionDone);
    assert_eq!(log(&h), ["lost true"]);
}

#[test]
fn lines_split_at_every_byte_boundary() {
    let stream = b"one\r\ntwo\r\n\r\nthree\r\n";
    let expected = ["line one", "line two", "line ", "line three"];
    for cut in 0..=stream.len() {
        let mut h = script();
        h.feed(&stream[..cut]);
        h.feed(&stream[cut..]);
        assert_eq!(log(&h), expected, "cut at {cut}");
    }
    for size in 1..=stream.len() {
        let mut h = script();
        for c in chunks(stream, &[size]) {
            h.feed(c);
        }
        assert_eq!(log(&h), expected, "chunks of {size}");
    }
}

#[test]
fn raw_mode_mid_chunk_gets_the_rest_of_the_chunk() {
    let mut h = script();
    h.feed(b"a\r\nRAW\r\nrest\r\nof data");
    assert_eq!(log(&h), ["line a", "line RAW", "raw rest\r\nof data"]);
    h.feed(b"more");
    assert_eq!(log(&h)[3], "raw more");
}

#[test]
fn set_line_mode_from_raw_parses_the_tail_in_the_same_call() {
    let mut h = script();
    h.feed(b"RAW\r\nbody|x\r\ny\r\nRAW\r\nz|");
    assert_eq!(
        log(&h),
        [
            "line RAW",
            "raw body|x\r\ny\r\nRAW\r\nz|",
            "line x",
            "line y",
            "line RAW",
            "raw z|"
        ]
    );
    assert!(h.p.parser().is_line_mode());
}

#[test]
fn set_line_mode_from_a_line_appends_after_the_buffer() {
    let mut h = script();
    h.feed(b"REFEED\r\nnext\r\npart");
    assert_eq!(log(&h), ["line REFEED", "line next", "line partfed"]);
    assert_eq!(h.p.parser().pending(), b"");
}

#[test]
fn clear_line_buffer_drops_the_rest_of_the_chunk() {
    let mut h = script();
    h.feed(b"x\r\nCLEAR\r\ny\r\nz");
    assert_eq!(log(&h), ["line x", "line CLEAR", "cleared y\r\nz"]);
    h.feed(b"w\r\n");
    assert_eq!(log(&h)[3], "line w");
}

#[test]
fn clear_and_refeed_happen_in_call_order() {
    let mut h = script();
    h.feed(b"CF\r\ndropped\r\n");
    assert_eq!(log(&h), ["line CF", "line after"]);

    let mut h = script();
    h.feed(b"FC\r\nrest");
    assert_eq!(log(&h), ["line FC", "cleared restlost\r\n"]);
    assert_eq!(h.p.parser().pending(), b"");
}

#[test]
fn no_lines_once_the_transport_is_closing() {
    let mut h = script();
    h.feed(b"a\r\nCLOSE\r\nb\r\nc");
    assert_eq!(log(&h), ["line a", "line CLOSE"]);
    h.feed(b"\r\nd\r\n");
    assert_eq!(log(&h).len(), 2);
    assert_eq!(h.p.parser().pending(), b"b\r\nc\r\nd\r\n");
}

#[test]
fn exceeded_gets_every_pending_byte() {
    let mut h = script();
    h.feed(b"ok\r\n123456789\r\nnext\r\npartial");
    assert_eq!(log(&h), ["line ok", "long 123456789\r\nnext\r\npartial"]);
    assert_eq!(h.p.parser().pending(), b"");

    let mut h = script();
    h.feed(b"12345678\r");
    assert!(
        log(&h).is_empty(),
        "9 bytes, one short of MAX + len(delimiter)"
    );
    h.feed(b"9");
    assert_eq!(log(&h), ["long 12345678\r9"]);
}

#[test]
fn bytes_fed_back_from_line_length_exceeded_are_parsed_at_once() {
    struct Skip(Vec<String>);
    impl LineHandler for Skip {
        fn line_received(&mut self, _: &mut LineCx<'_, '_>, line: &[u8]) {
            self.0.push(show(line));
        }
        fn line_length_exceeded(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
            // Skip the long line, keep what follows it.
            let end = data
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(data.len(), |i| i + 2);
            cx.set_line_mode(&data[end..]);
        }
    }
    let mut h = Harness::new(LineReceiver::new(Skip(Vec::new())).with_max_length(3));
    h.feed(b"abc\r\ntoo long\r\ndef\r\n");
    assert_eq!(h.p.handler().0, ["abc", "def"]);
}

#[test]
fn delimiter_and_limit_changes_apply_to_the_rest_of_the_chunk() {
    let mut h = script();
    h.feed(b"LF\r\na\nb\r\n");
    assert_eq!(log(&h), ["line LF", "line a", "line b\r"]);

    let mut h = script();
    h.feed(b"MAX2\r\nab\r\nabc\r\n");
    assert_eq!(log(&h), ["line MAX2", "line ab", "long abc\r\n"]);
}

#[test]
fn lines_of_one_chunk_are_slices_of_it() {
    #[derive(Default)]
    struct Where(Vec<usize>);
    impl LineHandler for Where {
        fn line_received(&mut self, _: &mut LineCx<'_, '_>, line: &[u8]) {
            self.0.push(line.as_ptr() as usize);
        }
    }
    let mut h = Harness::new(LineReceiver::new(Where::default()));
    let chunk = b"ab\r\ncd\r\nef".to_vec();
    let base = chunk.as_ptr() as usize;
    h.feed(&chunk);
    assert_eq!(h.p.handler().0, [base, base + 4]);
    assert_eq!(h.p.parser().pending(), b"ef");
}

#[test]
fn a_large_chunk_parses_in_linear_time() {
    #[derive(Default)]
    struct Count(usize);
    impl LineHandler for Count {
        fn line_received(&mut self, _: &mut LineCx<'_, '_>, _: &[u8]) {
            self.0 += 1;
        }
    }
    let lines = 200_000;
    let data = b"abcdeabcdeabcde\r\n".repeat(lines);
    let mut h = Harness::new(LineReceiver::new(Count::default()));
    let start = Instant::now();
    h.feed(&data);
    h.feed(&data[..data.len() - 1]);
    assert_eq!(h.p.handler().0, 2 * lines - 1);
    // Quadratic re-slicing would copy terabytes here.
    assert!(start.elapsed().as_secs() < 20);
}

#[test]
fn a_long_partial_line_is_not_searched_again() {
    // 16 KiB arriving a byte at a time: quadratic if every read rescanned the buffer.
    let mut h = Harness::new(LineReceiver::new(Ignore).with_max_length(1 << 20));
    let start = Instant::now();
    for _ in 0..200_000 {
        h.feed(b"x");
    }
    h.feed(b"\r\n");
    assert_eq!(h.p.parser().pending(), b"");
    assert!(start.elapsed().as_secs() < 20);
}

struct Ignore;
impl LineHandler for Ignore {
    fn line_received(&mut self, _: &mut LineCx<'_, '_>, _: &[u8]) {}
}

#[test]
fn pause_in_raw_mode_buffers_and_resume_delivers_it_in_one_piece() {
    struct RawPause(Vec<String>);
    impl LineHandler for RawPause {
        fn line_received(&mut self, cx: &mut LineCx<'_, '_>, _: &[u8]) {
            cx.set_raw_mode();
            cx.pause_producing();
        }
        fn raw_data_received(&mut self, _: &mut LineCx<'_, '_>, data: &[u8]) {
            self.0.push(show(data));
        }
    }
    let mut h = Harness::new(LineReceiver::new(RawPause(Vec::new())));
    h.feed(b"go\r\nab");
    h.feed(b"cd");
    assert!(h.p.handler().0.is_empty());
    h.with_cx(|p, cx| p.resume_producing(cx));
    assert_eq!(h.p.handler().0, ["abcd"]);
    h.feed(b"ef");
    assert_eq!(h.p.handler().0, ["abcd", "ef"]);
}

#[test]
fn set_line_mode_in_connection_made_parses_at_once() {
    struct Early(Vec<String>);
    impl LineHandler for Early {
        fn connection_made(&mut self, cx: &mut LineCx<'_, '_>) {
            cx.set_line_mode(b"preset\r\n");
        }
        fn line_received(&mut self, _: &mut LineCx<'_, '_>, line: &[u8]) {
            self.0.push(show(line));
        }
    }
    let h = Harness::new(LineReceiver::new(Early(Vec::new())));
    assert_eq!(h.p.handler().0, ["preset"]);
}

#[test]
fn clear_line_buffer_outside_callbacks_returns_the_buffer() {
    let mut h = script();
    h.feed(b"partial");
    assert_eq!(h.p.clear_line_buffer(), b"partial");
    assert_eq!(h.p.parser().pending(), b"");
}

#[test]
#[should_panic(expected = "cannot be empty")]
fn an_empty_delimiter_is_refused() {
    let _ = LineReceiver::new(Ignore).with_delimiter(b"");
}
