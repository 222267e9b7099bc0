//! Property tests of the line receivers against a direct port of Twisted's algorithm
//! (`LineReceiver.dataReceived` with its `_busyReceiving` re-entrancy, and
//! `LineOnlyReceiver.dataReceived`), adjusted only for the documented differences: parsing
//! goes on after `lineLengthExceeded`, and nothing is delivered once the transport is
//! closing. A scripted handler switches modes, feeds bytes back, clears, pauses, changes the
//! delimiter and the limit, and closes, driven by the bytes it receives.

use proptest::prelude::*;

use super::{Harness, chunks};
use crate::protocols::basic::{
    LineCx, LineEvent, LineHandler, LineOnlyCx, LineOnlyHandler, LineOnlyParser, LineParser,
    LineReceiver,
};

/// What a callback may do, the same for the model and the real receiver.
trait Controls {
    fn set_raw_mode(&mut self);
    fn set_line_mode(&mut self, extra: &[u8]);
    fn clear(&mut self) -> Vec<u8>;
    fn pause(&mut self);
    fn close(&mut self);
    fn set_delimiter(&mut self, d: &[u8]);
    fn set_max_length(&mut self, n: usize);
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Line(Vec<u8>),
    Raw(Vec<u8>),
    Long(Vec<u8>),
    Cleared(Vec<u8>),
}

#[derive(Clone, Copy)]
enum Kind {
    Line,
    Raw,
    Long,
}

/// The scripted handler: acts on the first byte of a line, on markers in raw data, and on the
/// length of exceeded data. It gets the receiver's own slice, so that handing back a tail of
/// it takes the receiver's no-copy path.
fn script(kind: Kind, data: &[u8], c: &mut dyn Controls, log: &mut Vec<Ev>) {
    match kind {
        Kind::Line => {
            log.push(Ev::Line(data.to_vec()));
            match data.first() {
                Some(b'R') => c.set_raw_mode(),
                Some(b'C') => {
                    let rest = c.clear();
                    log.push(Ev::Cleared(rest));
                }
                Some(b'P') => c.pause(),
                Some(b'X') => c.close(),
                Some(b'E') => c.set_line_mode(b"ext\n"),
                // A tail of the line itself goes after the whole buffer, like any other bytes.
                Some(b'T') => c.set_line_mode(&data[1..]),
                Some(b'M') => c.set_max_length(data.len() % 9),
                Some(b'D') => c.set_delimiter(if data.len() % 2 == 0 { b"\n" } else { b"ab" }),
                _ => {}
            }
        }
        Kind::Raw => {
            log.push(Ev::Raw(data.to_vec()));
            if let Some(i) = data.iter().position(|&b| b == b'L') {
                c.set_line_mode(&data[i + 1..]);
                if data.len() % 3 == 0 {
                    c.set_line_mode(&data[i + 1..]);
                }
            } else if data.contains(&b'K') {
                c.set_line_mode(&data[..1]);
            }
            if data.contains(&b'P') {
                c.pause();
            }
            if data.contains(&b'C') {
                let rest = c.clear();
                log.push(Ev::Cleared(rest));
            }
        }
        Kind::Long => {
            log.push(Ev::Long(data.to_vec()));
            if data.len() > 3 {
                c.set_line_mode(&data[3..]);
            }
            if data.first() == Some(&b'X') {
                c.close();
            }
        }
    }
}

/// Twisted's `LineReceiver`, transcribed.
struct Model {
    buffer: Vec<u8>,
    line_mode: bool,
    paused: bool,
    disconnecting: bool,
    delimiter: Vec<u8>,
    max: usize,
    log: Vec<Ev>,
}

impl Controls for Model {
    fn set_raw_mode(&mut self) {
        self.line_mode = false;
    }
    fn set_line_mode(&mut self, extra: &[u8]) {
        self.line_mode = true;
        // `dataReceived(extra)` while busy: appended to the buffer.
        self.buffer.extend_from_slice(extra);
    }
    fn clear(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }
    fn pause(&mut self) {
        self.paused = true;
    }
    fn close(&mut self) {
        self.disconnecting = true;
    }
    fn set_delimiter(&mut self, d: &[u8]) {
        self.delimiter = d.to_vec();
    }
    fn set_max_length(&mut self, n: usize) {
        self.max = n;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Model {
    fn new(delimiter: &[u8], max: usize) -> Self {
        Model {
            buffer: Vec::new(),
            line_mode: true,
            paused: false,
            disconnecting: false,
            delimiter: delimiter.to_vec(),
            max,
            log: Vec::new(),
        }
    }

    fn call(&mut self, kind: Kind, data: Vec<u8>) {
        let mut log = std::mem::take(&mut self.log);
        script(kind, &data, self, &mut log);
        self.log = log;
    }

    fn data_received(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        while !self.buffer.is_empty() && !self.paused && !self.disconnecting {
            if !self.line_mode {
                let data = std::mem::take(&mut self.buffer);
                self.call(Kind::Raw, data);
                continue;
            }
            match find(&self.buffer, &self.delimiter) {
                None if self.buffer.len() >= self.max + self.delimiter.len() => {
                    let data = std::mem::take(&mut self.buffer);
                    self.call(Kind::Long, data);
                }
                None => return,
                Some(p) if p > self.max => {
                    let data = std::mem::take(&mut self.buffer);
                    self.call(Kind::Long, data);
                }
                Some(p) => {
                    let line = self.buffer[..p].to_vec();
                    self.buffer.drain(..p + self.delimiter.len());
                    self.call(Kind::Line, line);
                }
            }
        }
    }

    fn resume(&mut self) {
        self.paused = false;
        self.data_received(b"");
    }
}

#[derive(Default)]
struct Scripted {
    log: Vec<Ev>,
}

struct Real<'x, 'a, 'b>(&'x mut LineCx<'a, 'b>);

impl Controls for Real<'_, '_, '_> {
    fn set_raw_mode(&mut self) {
        self.0.set_raw_mode();
    }
    fn set_line_mode(&mut self, extra: &[u8]) {
        self.0.set_line_mode(extra);
    }
    fn clear(&mut self) -> Vec<u8> {
        self.0.clear_line_buffer()
    }
    fn pause(&mut self) {
        self.0.pause_producing();
    }
    fn close(&mut self) {
        self.0.transport().lose_connection();
    }
    fn set_delimiter(&mut self, d: &[u8]) {
        self.0.set_delimiter(d);
    }
    fn set_max_length(&mut self, n: usize) {
        self.0.set_max_length(n);
    }
}

impl LineHandler for Scripted {
    fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
        script(Kind::Line, line, &mut Real(cx), &mut self.log);
    }
    fn raw_data_received(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
        script(Kind::Raw, data, &mut Real(cx), &mut self.log);
    }
    fn line_length_exceeded(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
        script(Kind::Long, data, &mut Real(cx), &mut self.log);
    }
}

/// Short and long (searched differently), self-overlapping and not.
const DELIMITERS: &[&[u8]] = &[b"\r\n", b"\n", b"ab", b"aa", b"xyx", b"xyxyz"];

fn stream() -> impl Strategy<Value = Vec<u8>> {
    let alphabet = b"abxyz\r\n\nRCPXEMDLKT".to_vec();
    prop::collection::vec(prop::sample::select(alphabet), 0..160)
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..24, 1..8)
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn line_receiver_matches_twisted(
        data in stream(),
        sizes in sizes(),
        d in 0..DELIMITERS.len(),
        max in 0usize..12,
    ) {
        let delimiter = DELIMITERS[d];
        let mut model = Model::new(delimiter, max);
        let mut h = Harness::new(
            LineReceiver::new(Scripted::default()).with_delimiter(delimiter).with_max_length(max),
        );
        for chunk in chunks(&data, &sizes) {
            model.data_received(chunk);
            h.feed(chunk);
            for _ in 0..3 {
                if model.paused {
                    model.resume();
                }
                if h.p.is_paused() {
                    h.with_cx(|p, cx| p.resume_producing(cx));
                }
            }
            prop_assert_eq!(&h.p.handler().log, &model.log);
            prop_assert_eq!(h.p.parser().pending(), &model.buffer[..]);
            prop_assert_eq!(h.p.parser().is_line_mode(), model.line_mode);
            prop_assert_eq!(h.t.disconnecting(), model.disconnecting);
        }
    }

    /// A valid stream (no line too long) gives the same lines whatever its chunking, from
    /// both parsers and both ways of feeding them.
    #[test]
    fn any_split_of_a_valid_stream_gives_the_same_lines(
        lines in prop::collection::vec(prop::collection::vec(prop::sample::select(b"bcdzRC ".to_vec()), 0..12), 0..20),
        tail in prop::collection::vec(prop::sample::select(b"bcdz".to_vec()), 0..12),
        sizes in sizes(),
        d in 0..DELIMITERS.len(),
    ) {
        let delimiter = DELIMITERS[d];
        let mut data: Vec<u8> = lines.iter().flat_map(|l| [&l[..], delimiter].concat()).collect();
        data.extend_from_slice(&tail);
        let expected: Vec<LineEvent<'_>> = lines.iter().map(|l| LineEvent::Line(l)).collect();
        let expected = format!("{expected:?}");

        let mut p = LineParser::new().with_delimiter(delimiter).with_max_length(12);
        // LineOnlyReceiver counts a partial delimiter in the tail against the limit.
        let mut q = LineOnlyParser::new()
            .with_delimiter(delimiter)
            .with_max_length(12 + delimiter.len());
        let (mut in_place, mut fed) = (Vec::new(), Vec::new());
        for c in chunks(&data, &sizes) {
            let mut pos = 0;
            while let Some(ev) = p.next_event_in(c, &mut pos) {
                in_place.push(ev.to_owned_event());
            }
            q.feed(c);
            while let Some(ev) = q.next_event() {
                fed.push(ev.to_owned_event());
            }
        }
        prop_assert_eq!(format!("{in_place:?}"), expected.clone());
        prop_assert_eq!(format!("{fed:?}"), expected);
        prop_assert_eq!(p.pending(), &tail[..]);
        prop_assert_eq!(q.pending(), &tail[..]);
    }

    #[test]
    fn line_only_receiver_matches_twisted(
        data in stream(),
        sizes in sizes(),
        d in 0..DELIMITERS.len(),
        max in 0usize..12,
    ) {
        let delimiter = DELIMITERS[d];
        let mut model = LineOnlyModel {
            buffer: Vec::new(),
            delimiter: delimiter.to_vec(),
            max,
            disconnecting: false,
            log: Vec::new(),
        };
        let mut h = Harness::new(
            crate::protocols::basic::LineOnlyReceiver::new(LineOnlyScripted::default())
                .with_delimiter(delimiter)
                .with_max_length(max),
        );
        for chunk in chunks(&data, &sizes) {
            model.data_received(chunk);
            h.feed(chunk);
            prop_assert_eq!(&h.p.handler().log, &model.log);
            // Once closing, Twisted has split the buffer already; torsion just keeps it.
            if !model.disconnecting {
                prop_assert_eq!(h.p.parser().pending(), &model.buffer[..]);
            }
        }
    }

    #[test]
    fn line_parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..300), sizes in sizes()) {
        let mut p = LineParser::new().with_max_length(7);
        let mut q = LineOnlyParser::new().with_max_length(7);
        for (i, c) in chunks(&data, &sizes).into_iter().enumerate() {
            let mut pos = 0;
            while let Some(ev) = p.next_event_in(c, &mut pos) {
                if i % 2 == 1 && matches!(ev, LineEvent::Line(_)) {
                    p.set_raw_mode();
                } else {
                    p.set_line_mode();
                }
            }
            q.feed(c);
            while q.next_event().is_some() {}
        }
    }
}

trait ToOwnedEvent {
    fn to_owned_event(&self) -> OwnedEvent;
}

/// A [`LineEvent`] that outlives the parser's borrow, printing the same.
struct OwnedEvent(String);

impl std::fmt::Debug for OwnedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl ToOwnedEvent for LineEvent<'_> {
    fn to_owned_event(&self) -> OwnedEvent {
        OwnedEvent(format!("{self:?}"))
    }
}

/// Twisted's `LineOnlyReceiver`, transcribed (Python's `split` included).
struct LineOnlyModel {
    buffer: Vec<u8>,
    delimiter: Vec<u8>,
    max: usize,
    disconnecting: bool,
    log: Vec<Ev>,
}

impl LineOnlyModel {
    fn data_received(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(p) = find(&self.buffer, &self.delimiter) {
            lines.push(self.buffer[..p].to_vec());
            self.buffer.drain(..p + self.delimiter.len());
        }
        for line in lines {
            if self.disconnecting {
                return;
            }
            if line.len() > self.max {
                self.long(line);
                return;
            }
            if line.first() == Some(&b'X') {
                self.disconnecting = true;
            }
            self.log.push(Ev::Line(line));
        }
        if !self.disconnecting && self.buffer.len() > self.max {
            self.long(self.buffer.clone());
        }
    }

    fn long(&mut self, data: Vec<u8>) {
        if data.len() % 2 == 0 {
            self.disconnecting = true;
        }
        self.log.push(Ev::Long(data));
    }
}

/// Closes on lines starting with `X` and on long data of even length.
#[derive(Default)]
struct LineOnlyScripted {
    log: Vec<Ev>,
}

impl LineOnlyHandler for LineOnlyScripted {
    fn line_received(&mut self, cx: &mut LineOnlyCx<'_, '_>, line: &[u8]) {
        if line.first() == Some(&b'X') {
            cx.transport().lose_connection();
        }
        self.log.push(Ev::Line(line.to_vec()));
    }
    fn line_length_exceeded(&mut self, cx: &mut LineOnlyCx<'_, '_>, line: &[u8]) {
        if line.len() % 2 == 0 {
            cx.transport().lose_connection();
        }
        self.log.push(Ev::Long(line.to_vec()));
    }
}
