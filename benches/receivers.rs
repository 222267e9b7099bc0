//! Framing receiver throughput beside Python Twisted's, from one run:
//! `cargo bench --bench receivers`.
//!
//! 1. `LineReceiver` on `(b"abcde"*10 + b"\r\n")*1000` (Twisted's own linereceiver
//!    benchmark), fed in 16, 64, 1024 and 65536-byte chunks: lines per second.
//! 2. `Int32StringReceiver` on 50-byte payloads, fed in 1024 and 65536-byte chunks:
//!    messages per second.
//!
//! Each figure is the median of several runs (default 9; pass a number to change it), each
//! feeding the stream again and again for about 0.2 s of this thread's CPU time (the rates
//! are per CPU second, on both sides, so that other load on the machine does not count),
//! through
//! `Protocol::data_received` on a `StringTransport`. When `python3` can import Twisted,
//! `benches/receivers.py` times Twisted on the same loads in the same run, and each row
//! shows both and the ratio. `TORSION_BENCH_SCALE=0.1` shortens every run.
//!
//! Targets: at least 50 M lines/s at 64 KiB chunks, and no slower at 64 KiB than at 16 B;
//! at least 30 M messages/s for Int32StringReceiver.

mod common;

use std::hint::black_box;
use std::time::Duration;

use torsion::protocols::basic::{
    Int32StringReceiver, LineCx, LineHandler, LineReceiver, StringCx, StringHandler,
};
use torsion::testing::StringTransport;
use torsion::{Cx, Protocol, Reactor};

const LINE_CHUNKS: [usize; 4] = [16, 64, 1024, 65536];
const INT32_CHUNKS: [usize; 2] = [1024, 65536];

fn scale() -> f64 {
    std::env::var("TORSION_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

#[derive(Default)]
struct Lines(u64);
impl LineHandler for Lines {
    fn line_received(&mut self, _: &mut LineCx<'_, '_>, line: &[u8]) {
        black_box(line);
        self.0 += 1;
    }
}

#[derive(Default)]
struct Strings(u64);
impl StringHandler for Strings {
    fn string_received(&mut self, _: &mut StringCx<'_, '_>, string: &[u8]) {
        black_box(string);
        self.0 += 1;
    }
}

/// CPU time this thread has used: what the rates are measured in, so that other load on a
/// shared machine does not count against them.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Feeds `stream` in `chunk`-byte pieces again and again for about `run`, `runs` times;
/// the median of messages per second. `count` reads the protocol's message count.
fn median_rate<P: Protocol>(
    runs: usize,
    run: Duration,
    stream: &[u8],
    chunk: usize,
    mut make: impl FnMut() -> P,
    count: impl Fn(&P) -> u64,
    expect_per_pass: u64,
) -> f64 {
    let reactor = Reactor::builder()
        .install_signal_handlers(false)
        .build()
        .expect("a reactor");
    let mut t = StringTransport::new();
    let pieces: Vec<&[u8]> = stream.chunks(chunk).collect();
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let mut p = make();
            let cx = &mut Cx::new(&mut t, &reactor);
            p.connection_made(cx);
            let start = thread_cpu();
            let mut passes = 0u64;
            loop {
                for piece in &pieces {
                    p.data_received(cx, black_box(piece));
                }
                passes += 1;
                if passes % 16 == 0 && thread_cpu() - start >= run {
                    break;
                }
            }
            let elapsed = (thread_cpu() - start).as_secs_f64();
            assert_eq!(count(&p), passes * expect_per_pass, "every message parsed");
            count(&p) as f64 / elapsed
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Twisted's rates from `benches/receivers.py`, by (kind, chunk), or why there are none.
fn twisted(runs: usize, run: Duration) -> Result<Vec<(String, usize, f64)>, String> {
    let text = common::python(
        "receivers.py",
        &[runs.min(5).to_string(), run.as_secs_f64().to_string()],
    )?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let kind = f.next()?.to_owned();
            let chunk = f.next()?.parse().ok()?;
            let rate = f.next()?.parse().ok()?;
            Some((kind, chunk, rate))
        })
        .collect())
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(9)
        .max(1);
    let run = Duration::from_secs_f64(0.2 * scale());
    let line_stream = b"abcde".repeat(10).into_iter().chain(*b"\r\n");
    let line_stream: Vec<u8> = line_stream.collect::<Vec<u8>>().repeat(1000);
    let mut int32_stream = Vec::new();
    for _ in 0..1000 {
        int32_stream.extend_from_slice(&50u32.to_be_bytes());
        int32_stream.extend_from_slice(&[b'x'; 50]);
    }

    let lines: Vec<(usize, f64)> = LINE_CHUNKS
        .iter()
        .map(|&chunk| {
            let rate = median_rate(
                runs,
                run,
                &line_stream,
                chunk,
                || LineReceiver::new(Lines::default()),
                |p| p.handler().0,
                1000,
            );
            (chunk, rate)
        })
        .collect();
    let strings: Vec<(usize, f64)> = INT32_CHUNKS
        .iter()
        .map(|&chunk| {
            let rate = median_rate(
                runs,
                run,
                &int32_stream,
                chunk,
                || Int32StringReceiver::new(Strings::default()),
                |p| p.handler().0,
                1000,
            );
            (chunk, rate)
        })
        .collect();
    let twisted = twisted(runs, run);

    println!("receivers benchmark: median of {runs} runs, one thread");
    match &twisted {
        Ok(_) => println!("Twisted: benches/receivers.py, same loads, same run"),
        Err(why) => println!("Twisted: not measured ({why})"),
    }
    let theirs = |kind: &str, chunk: usize| -> Option<f64> {
        twisted.as_ref().ok().and_then(|rows| {
            rows.iter()
                .find(|(k, c, _)| k == kind && *c == chunk)
                .map(|r| r.2)
        })
    };
    let row = |what: &str, kind: &str, chunk: usize, rate: f64| match theirs(kind, chunk) {
        Some(t) => println!(
            "{what} {chunk:>6} B chunks: {:9.2} M/s   Twisted {:7.3} M/s   ratio {:7.1}x",
            rate / 1e6,
            t / 1e6,
            rate / t
        ),
        None => println!("{what} {chunk:>6} B chunks: {:9.2} M/s", rate / 1e6),
    };
    for &(chunk, rate) in &lines {
        row("LineReceiver,        ", "line", chunk, rate);
    }
    for &(chunk, rate) in &strings {
        row("Int32StringReceiver, ", "int32", chunk, rate);
    }
    let at = |rows: &[(usize, f64)], chunk| rows.iter().find(|r| r.0 == chunk).unwrap().1;
    let big = at(&lines, 65536);
    let small = at(&lines, 16);
    let int32_best = strings.iter().map(|r| r.1).fold(0.0, f64::max);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "target: >= 50 M lines/s at 64 KiB chunks: {:.1} M/s, {}",
        big / 1e6,
        verdict(big >= 50e6)
    );
    println!(
        "target: 64 KiB chunks no slower than 16 B chunks: {:.1}x, {}",
        big / small,
        verdict(big >= small)
    );
    println!(
        "target: Int32StringReceiver >= 30 M msgs/s: {:.1} M/s, {}",
        int32_best / 1e6,
        verdict(int32_best >= 30e6)
    );
}
