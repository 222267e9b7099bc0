//! In-process benchmarks of the parts with no sockets: the framing receivers of
//! `torsion::protocols::basic` against plain hand-written parsers, and Deferred callback
//! chains against plain closures.

use std::hint::black_box;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use torsion::protocols::basic::{
    Int32StringReceiver, LineCx, LineHandler, LineReceiver, NetstringReceiver, StringCx,
    StringHandler,
};
use torsion::testing::StringTransport;
use torsion::{Cx, Protocol, Reactor};

/// Payload of every framed message.
pub const PAYLOAD: usize = 64;
/// Bytes handed to `data_received` at a time (not a multiple of any frame size).
pub const CHUNK: usize = 16 * 1024 + 7;
/// Size of the stream parsed per repetition.
const STREAM: usize = 16 << 20;
/// Callbacks per Deferred chain.
pub const CHAIN: usize = 10;

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct ParseResult {
    pub format: String,
    /// Messages per second through the torsion receiver.
    pub torsion_msgs_per_sec: f64,
    pub torsion_mb_per_sec: f64,
    /// Messages per second through a plain hand-written parser.
    pub plain_msgs_per_sec: f64,
    pub plain_mb_per_sec: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct DeferResult {
    /// Nanoseconds to build a Deferred, add CHAIN callbacks and fire it.
    pub deferred_ns: f64,
    /// Nanoseconds to run CHAIN boxed closures in a Vec.
    pub closures_ns: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct MicroResult {
    pub ok: bool,
    pub error: Option<String>,
    pub parse: Vec<ParseResult>,
    pub defer: Option<DeferResult>,
}

#[derive(Default)]
struct Count {
    msgs: u64,
    bytes: u64,
}

impl LineHandler for Count {
    fn line_received(&mut self, _cx: &mut LineCx<'_, '_>, line: &[u8]) {
        self.msgs += 1;
        self.bytes += line.len() as u64;
    }
}

impl StringHandler for Count {
    fn string_received(&mut self, _cx: &mut StringCx<'_, '_>, s: &[u8]) {
        self.msgs += 1;
        self.bytes += s.len() as u64;
    }
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Line,
    Netstring,
    Int32,
}

fn frame(format: Format, payload: &[u8], out: &mut Vec<u8>) {
    match format {
        Format::Line => {
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        Format::Netstring => {
            out.extend_from_slice(payload.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(payload);
            out.push(b',');
        }
        Format::Int32 => {
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(payload);
        }
    }
}

fn stream(format: Format) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(STREAM + 1024);
    let mut n = 0u64;
    let mut i = 0u8;
    while out.len() < STREAM {
        // Printable payload with no '\r' or '\n' in it.
        let payload: Vec<u8> = (0..PAYLOAD as u8)
            .map(|j| b'a' + (i.wrapping_add(j) % 26))
            .collect();
        frame(format, &payload, &mut out);
        n += 1;
        i = i.wrapping_add(1);
    }
    (out, n)
}

/// The plain parser: the same framing, written the short way, carrying a partial frame over.
fn plain_parse(format: Format, data: &[u8], carry: &mut Vec<u8>, c: &mut Count) {
    carry.extend_from_slice(data);
    let buf = &carry[..];
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let used = match format {
            Format::Line => match rest.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    let line = &rest[..nl];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    c.msgs += 1;
                    c.bytes += line.len() as u64;
                    nl + 1
                }
                None => break,
            },
            Format::Netstring => {
                let Some(colon) = rest.iter().position(|&b| b == b':') else {
                    break;
                };
                let len: usize = std::str::from_utf8(&rest[..colon])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if rest.len() < colon + 1 + len + 1 {
                    break;
                }
                c.msgs += 1;
                c.bytes += len as u64;
                colon + len + 2
            }
            Format::Int32 => {
                if rest.len() < 4 {
                    break;
                }
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if rest.len() < 4 + len {
                    break;
                }
                c.msgs += 1;
                c.bytes += len as u64;
                4 + len
            }
        };
        at += used;
    }
    carry.drain(..at);
}

fn feed_torsion(format: Format, data: &[u8], reactor: &Reactor) -> Count {
    let mut t = StringTransport::new();
    let cx = &mut Cx::new(&mut t, reactor);
    match format {
        Format::Line => {
            let mut p = LineReceiver::new(Count::default());
            for chunk in data.chunks(CHUNK) {
                p.data_received(cx, black_box(chunk));
            }
            p.into_handler()
        }
        Format::Netstring => {
            let mut p = NetstringReceiver::new(Count::default());
            for chunk in data.chunks(CHUNK) {
                p.data_received(cx, black_box(chunk));
            }
            p.into_handler()
        }
        Format::Int32 => {
            let mut p = Int32StringReceiver::new(Count::default());
            for chunk in data.chunks(CHUNK) {
                p.data_received(cx, black_box(chunk));
            }
            p.into_handler()
        }
    }
}

fn parse_one(format: Format, name: &str, reactor: &Reactor) -> Result<ParseResult, String> {
    let (data, n) = stream(format);
    let mb = data.len() as f64 / 1e6;
    let t = Instant::now();
    let c = feed_torsion(format, &data, reactor);
    let torsion_s = t.elapsed().as_secs_f64();
    if c.msgs != n || c.bytes != n * PAYLOAD as u64 {
        return Err(format!(
            "{name}: torsion parsed {} messages / {} bytes, expected {n} / {}",
            c.msgs,
            c.bytes,
            n * PAYLOAD as u64
        ));
    }
    let t = Instant::now();
    let mut pc = Count::default();
    let mut carry = Vec::with_capacity(2 * CHUNK);
    for chunk in data.chunks(CHUNK) {
        plain_parse(format, black_box(chunk), &mut carry, &mut pc);
    }
    let plain_s = t.elapsed().as_secs_f64();
    if pc.msgs != n {
        return Err(format!("{name}: plain parser got {} of {n}", pc.msgs));
    }
    Ok(ParseResult {
        format: name.into(),
        torsion_msgs_per_sec: n as f64 / torsion_s,
        torsion_mb_per_sec: mb / torsion_s,
        plain_msgs_per_sec: n as f64 / plain_s,
        plain_mb_per_sec: mb / plain_s,
    })
}

pub fn run(core: Option<usize>) -> MicroResult {
    if let Some(core) = core {
        crate::sys::pin_to_core(core);
    }
    let mut r = MicroResult::default();
    let reactor = match Reactor::builder().install_signal_handlers(false).build() {
        Ok(re) => re,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    for (format, name) in [
        (Format::Line, "LineReceiver (\\r\\n)"),
        (Format::Netstring, "NetstringReceiver"),
        (Format::Int32, "Int32StringReceiver"),
    ] {
        match parse_one(format, name, &reactor) {
            Ok(p) => r.parse.push(p),
            Err(e) => {
                r.error = Some(e);
                return r;
            }
        }
    }
    r.defer = defer_chains();
    r.ok = true;
    r
}

/// A Deferred with CHAIN callbacks, fired, against CHAIN boxed closures run in order.
fn defer_chains() -> Option<DeferResult> {
    use torsion::defer::Deferred;
    const N: usize = 200_000;
    let t = Instant::now();
    let mut sum = 0u64;
    for i in 0..N {
        let d: Deferred<u64> = Deferred::new();
        for _ in 0..CHAIN {
            d.add_callback(|x: u64| x + 1);
        }
        let _ = d.callback(black_box(i as u64));
        if let Some(Ok(v)) = d.take_result() {
            sum += v;
        }
    }
    let deferred_ns = t.elapsed().as_nanos() as f64 / N as f64;
    let expect = (0..N as u64).map(|i| i + CHAIN as u64).sum::<u64>();
    if sum != expect {
        return None;
    }
    let t = Instant::now();
    let mut sum = 0u64;
    for i in 0..N {
        let mut steps: Vec<Box<dyn FnOnce(u64) -> u64>> = Vec::new();
        for _ in 0..CHAIN {
            steps.push(Box::new(|x: u64| x + 1));
        }
        let mut v = black_box(i as u64);
        for f in steps {
            v = f(v);
        }
        sum += v;
    }
    let closures_ns = t.elapsed().as_nanos() as f64 / N as f64;
    black_box(sum);
    Some(DeferResult {
        deferred_ns,
        closures_ns,
    })
}
