//! The checks behind the fuzz targets, as plain functions of the input bytes.
//!
//! Each input starts with a few bytes of configuration (limit, delimiter or prefix size, how to
//! cut the rest into chunks); the rest is the stream. Every check feeds the stream in those
//! chunks and asserts what must hold whatever the bytes: no panic, the same events whether the
//! parser reads chunks in place or has them fed, and every byte accounted for.
//!
//! torsion's own test suite includes this file and runs the seed corpus through it
//! (`tests/fuzz_seeds.rs`), so the targets are exercised on stable Rust too.

use torsion::protocols::basic::{
    Int8StringParser, Int16StringParser, Int32StringParser, LineCx, LineEvent, LineHandler,
    LineOnlyParser, LineParser, LineReceiver, NetstringParser, NetstringReceiver, StringCx,
    StringEvent, StringFraming, StringHandler,
};
use torsion::testing::StringTransport;
use torsion::{Cx, Protocol, Reactor};

const DELIMITERS: &[&[u8]] = &[b"\r\n", b"\n", b"\r\n\r\n", b"aa", b"xyx", b"xyxyz"];

/// Splits the configuration bytes off the input.
struct Input<'a> {
    config: [u8; 3],
    stream: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        let mut config = [0; 3];
        let n = data.len().min(3);
        config[..n].copy_from_slice(&data[..n]);
        Input {
            config,
            stream: &data[n..],
        }
    }

    /// The stream cut into chunks of 1 to 64 bytes, chosen by a generator seeded from the
    /// configuration.
    fn chunks(&self) -> Vec<&'a [u8]> {
        let mut state = u64::from(self.config[2]).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let most = u64::from(self.config[2] % 64) + 1;
        let mut out = Vec::new();
        let mut rest = self.stream;
        while !rest.is_empty() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let n = ((state % most) as usize + 1).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            out.push(chunk);
            rest = tail;
        }
        out
    }
}

/// `LineParser` and `LineOnlyParser`: in-place parsing and fed parsing agree, and the events
/// plus what is left pending add up to the input.
pub fn line_parsers(data: &[u8]) {
    let input = Input::new(data);
    let delimiter = DELIMITERS[usize::from(input.config[0]) % DELIMITERS.len()];
    let max = usize::from(input.config[1]);
    let chunks = input.chunks();

    let mut in_place = LineParser::new()
        .with_delimiter(delimiter)
        .with_max_length(max);
    let mut fed = in_place.clone();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for chunk in &chunks {
        let mut pos = 0;
        while let Some(ev) = in_place.next_event_in(chunk, &mut pos) {
            let ev = owned(ev);
            flip(&mut in_place, &ev);
            a.push(ev);
        }
        assert_eq!(pos, chunk.len());
        fed.feed(chunk);
        while let Some(ev) = fed.next_event() {
            let ev = owned(ev);
            flip(&mut fed, &ev);
            b.push(ev);
        }
    }
    assert_eq!(a, b);
    assert_eq!(in_place.pending(), fed.pending());

    let mut rebuilt = Vec::new();
    for (kind, bytes) in &a {
        rebuilt.extend_from_slice(bytes);
        match kind {
            'L' => {
                assert!(bytes.len() <= max);
                assert!(!bytes.windows(delimiter.len()).any(|w| w == delimiter));
                rebuilt.extend_from_slice(delimiter);
            }
            'X' => assert!(bytes.len() > max),
            _ => {}
        }
    }
    rebuilt.extend_from_slice(in_place.pending());
    assert_eq!(rebuilt, input.stream);

    let mut only = LineOnlyParser::new()
        .with_delimiter(delimiter)
        .with_max_length(max);
    for chunk in &chunks {
        let mut pos = 0;
        while let Some(ev) = only.next_event_in(chunk, &mut pos) {
            if let LineEvent::Line(line) = ev {
                assert!(line.len() <= max);
            }
        }
    }
}

/// Raw mode after a line starting with `R`, line mode again after raw data holding an `L`.
fn flip(p: &mut LineParser, (kind, bytes): &(char, Vec<u8>)) {
    match kind {
        'L' if bytes.first() == Some(&b'R') => p.set_raw_mode(),
        'R' if bytes.contains(&b'L') => p.set_line_mode(),
        _ => {}
    }
}

fn owned(ev: LineEvent<'_>) -> (char, Vec<u8>) {
    match ev {
        LineEvent::Line(l) => ('L', l.to_vec()),
        LineEvent::Raw(d) => ('R', d.to_vec()),
        LineEvent::LineLengthExceeded(d) => ('X', d.to_vec()),
    }
}

/// A `LineReceiver` whose handler switches modes, feeds tails back, clears and pauses as the
/// bytes say, on a `StringTransport`: it must not panic, whatever the input.
pub fn line_receiver(data: &[u8]) {
    /// Feeding bytes back can loop forever, or double the input each time (a raw `LR\n`
    /// that feeds back `LR\n` and `R\n`), so the handler gets a small budget of feeds.
    struct Wild {
        feeds: usize,
    }
    impl Wild {
        fn feed(&mut self, cx: &mut LineCx<'_, '_>, extra: &[u8]) {
            if self.feeds > 0 {
                self.feeds -= 1;
                cx.set_line_mode(extra);
            } else {
                cx.set_line_mode(b"");
            }
        }
    }
    impl LineHandler for Wild {
        fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
            match line.first() {
                Some(b'R') => cx.set_raw_mode(),
                Some(b'C') => drop(cx.clear_line_buffer()),
                Some(b'P') => cx.pause_producing(),
                Some(b'T') => self.feed(cx, &line[1..]),
                Some(b'D') => cx.set_delimiter(if line.len() % 2 == 0 { b"\n" } else { b"aa" }),
                Some(b'M') => cx.set_max_length(line.len()),
                Some(b'S') => cx.send_line(line),
                _ => {}
            }
        }
        fn raw_data_received(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
            if let Some(i) = data.iter().position(|&b| b == b'L') {
                self.feed(cx, &data[i + 1..]);
                if data.len() % 3 == 0 {
                    self.feed(cx, &data[i..]);
                }
            }
            if data.contains(&b'C') {
                drop(cx.clear_line_buffer());
            }
        }
        fn line_length_exceeded(&mut self, cx: &mut LineCx<'_, '_>, data: &[u8]) {
            if data.len() > 2 {
                self.feed(cx, &data[2..]);
            }
        }
    }

    let input = Input::new(data);
    let delimiter = DELIMITERS[usize::from(input.config[0]) % DELIMITERS.len()];
    let reactor = Reactor::new().expect("reactor");
    let mut t = StringTransport::new();
    let mut p = LineReceiver::new(Wild { feeds: 8 })
        .with_delimiter(delimiter)
        .with_max_length(usize::from(input.config[1]));
    p.connection_made(&mut Cx::new(&mut t, &reactor));
    for chunk in input.chunks() {
        let cx = &mut Cx::new(&mut t, &reactor);
        p.data_received(cx, chunk);
        if p.is_paused() {
            p.resume_producing(cx);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    String(Vec<u8>),
    LengthLimitExceeded(usize),
    Malformed,
}

impl From<StringEvent<'_>> for Owned {
    fn from(ev: StringEvent<'_>) -> Self {
        match ev {
            StringEvent::String(s) => Owned::String(s.to_vec()),
            StringEvent::LengthLimitExceeded(n) => Owned::LengthLimitExceeded(n),
            StringEvent::Malformed(_) => Owned::Malformed,
        }
    }
}

/// Netstrings: chunking does not matter, the strings re-encode to a prefix of the input, an
/// error ends parsing, and the receiver closes exactly when the parser fails.
pub fn netstring(data: &[u8]) {
    let input = Input::new(data);
    let max = usize::from(input.config[1]) * 4;
    let events = string_events::<NetstringParser>(&input, max);
    check_prefix(&events, input.stream, |s| {
        NetstringParser::encode(s).unwrap()
    });

    struct Count(usize);
    impl StringHandler for Count {
        fn string_received(&mut self, _: &mut StringCx<'_, '_>, _: &[u8]) {
            self.0 += 1;
        }
    }
    let reactor = Reactor::new().expect("reactor");
    let mut t = StringTransport::new();
    let mut p = NetstringReceiver::new(Count(0)).with_max_length(max);
    for chunk in input.chunks() {
        p.data_received(&mut Cx::new(&mut t, &reactor), chunk);
    }
    let strings = events
        .iter()
        .filter(|e| matches!(e, Owned::String(_)))
        .count();
    assert_eq!(p.handler().0, strings);
    assert_eq!(t.disconnecting(), p.framing().is_broken());

    round_trip::<NetstringParser>(&input);
}

/// Length-prefixed strings, with a prefix of 1, 2 or 4 bytes: the same checks.
pub fn int_string(data: &[u8]) {
    let input = Input::new(data);
    let max = usize::from(input.config[1]) * 4;
    match input.config[0] % 3 {
        0 => int_checks::<Int8StringParser>(&input, max, 1),
        1 => int_checks::<Int16StringParser>(&input, max, 2),
        _ => int_checks::<Int32StringParser>(&input, max, 4),
    }
}

fn int_checks<F: StringFraming>(input: &Input<'_>, max: usize, bytes: usize) {
    let events = string_events::<F>(input, max);
    check_prefix(&events, input.stream, |s| F::encode(s).unwrap());
    if let Some(&Owned::LengthLimitExceeded(n)) = events.last() {
        assert!(n > max && n < 1 << (8 * bytes));
    }
    round_trip::<F>(input);
}

/// Events for the stream in its chunks, checked equal to the whole stream's and to those of
/// fed parsing.
fn string_events<F: StringFraming>(input: &Input<'_>, max: usize) -> Vec<Owned> {
    let run = |chunks: &[&[u8]], in_place: bool| {
        let mut f = F::default();
        f.set_max_length(max);
        let mut out = Vec::new();
        for chunk in chunks {
            if in_place {
                let mut pos = 0;
                while let Some(ev) = f.next_event_in(chunk, &mut pos) {
                    out.push(Owned::from(ev));
                }
                assert_eq!(pos, chunk.len());
            } else {
                f.feed(chunk);
                while let Some(ev) = f.next_event() {
                    out.push(Owned::from(ev));
                }
            }
        }
        out
    };
    let chunks = input.chunks();
    let events = run(&chunks, true);
    assert_eq!(events, run(&chunks, false));
    assert_eq!(events, run(&[input.stream], true));
    let failures = events
        .iter()
        .filter(|e| !matches!(e, Owned::String(_)))
        .count();
    assert!(failures <= 1);
    if failures == 1 {
        assert!(!matches!(events.last(), Some(Owned::String(_))));
    }
    events
}

/// The strings, framed again, are the start of the stream.
fn check_prefix(events: &[Owned], stream: &[u8], encode: impl Fn(&[u8]) -> Vec<u8>) {
    let mut rebuilt = Vec::new();
    for e in events {
        if let Owned::String(s) = e {
            rebuilt.extend(encode(s));
        }
    }
    assert!(stream.starts_with(&rebuilt));
}

/// The stream cut at every `,` into payloads, framed, and parsed back in the same chunking.
fn round_trip<F: StringFraming>(input: &Input<'_>) {
    let payloads: Vec<&[u8]> = input
        .stream
        .split(|&b| b == b',')
        .map(|p| &p[..p.len().min(255)])
        .collect();
    let wire: Vec<u8> = payloads
        .iter()
        .flat_map(|p| F::encode(p).unwrap())
        .collect();
    let framed = Input {
        config: input.config,
        stream: &wire,
    };
    let mut f = F::default();
    let mut got: Vec<Vec<u8>> = Vec::new();
    for chunk in framed.chunks() {
        let mut pos = 0;
        while let Some(ev) = f.next_event_in(chunk, &mut pos) {
            match ev {
                StringEvent::String(s) => got.push(s.to_vec()),
                other => panic!("{other:?} in a well-formed stream"),
            }
        }
    }
    assert_eq!(got, payloads);
}
