//! Memory stays flat against a fast producer and a slow reader: a push producer writing
//! 1 GiB to a peer that reads about 20 MiB/s, and a `FileSender` streaming a 256 MiB file.
//! One file so that nothing else runs in this process while RSS is measured; the two tests
//! run one after the other.

mod common;

use std::cell::Cell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};
use torsion::protocols::file_sender::FileSender;
use torsion::{ConnectionHandle, Cx, Producer, Protocol, Reactor};

static SERIAL: Mutex<()> = Mutex::new(());

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Samples this process's RSS every 10 ms until dropped; reports the peak.
struct RssWatch {
    stop: std::sync::Arc<AtomicBool>,
    peak: std::sync::Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start() -> RssWatch {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let peak = std::sync::Arc::new(AtomicU64::new(rss_kib()));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssWatch {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak_kib(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Reads everything at about `rate` bytes/s; returns the count and the SHA-256.
fn paced_reader(mut s: std::net::TcpStream, rate: f64) -> (u64, Vec<u8>) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, start) = (0u64, Instant::now());
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    loop {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            return (total, h.finalize().to_vec());
        }
        h.update(&buf[..n]);
        total += n as u64;
        let due = Duration::from_secs_f64(total as f64 / rate);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

const CHUNK: usize = 64 * 1024;

/// Writes 64 KiB per loop pass through its handle until paused; closes after `left` chunks.
struct Pump {
    handle: ConnectionHandle,
    left: Rc<Cell<u64>>,
    paused: Rc<Cell<bool>>,
    max_buffered: Rc<Cell<usize>>,
}

impl Pump {
    fn tick(&self, r: &Reactor) {
        if self.paused.get() || !self.handle.is_connected() {
            return;
        }
        if self.left.get() == 0 {
            self.handle.lose_connection();
            return;
        }
        self.handle.write(&[0x5a; CHUNK]);
        self.left.set(self.left.get() - 1);
        let b = self.handle.buffered_len().unwrap_or(0);
        self.max_buffered.set(self.max_buffered.get().max(b));
        let me = self.clone_pump();
        r.call_later(Duration::ZERO, move |r| me.tick(r));
    }

    fn clone_pump(&self) -> Pump {
        Pump {
            handle: self.handle.clone(),
            left: self.left.clone(),
            paused: self.paused.clone(),
            max_buffered: self.max_buffered.clone(),
        }
    }
}

impl Producer for Pump {
    fn pause_producing(&mut self, _: &mut Cx<'_>) {
        self.paused.set(true);
    }
    fn resume_producing(&mut self, cx: &mut Cx<'_>) {
        self.paused.set(false);
        let me = self.clone_pump();
        cx.reactor().call_later(Duration::ZERO, move |r| me.tick(r));
    }
}

struct StartPump(Rc<Cell<usize>>);

impl Protocol for StartPump {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        let pump = Pump {
            handle: cx.handle(),
            left: Rc::new(Cell::new((1u64 << 30) / CHUNK as u64)),
            paused: Rc::new(Cell::new(false)),
            max_buffered: self.0.clone(),
        };
        let first = pump.clone_pump();
        cx.transport()
            .register_producer(Box::new(pump), true)
            .unwrap();
        cx.reactor()
            .call_later(Duration::ZERO, move |r| first.tick(r));
    }
}

#[test]
fn push_producer_1_gib_to_a_20_mib_per_s_reader_keeps_memory_flat() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let reactor = reactor();
    let max = Rc::new(Cell::new(0));
    let m = max.clone();
    let addr = listen(&reactor, factory(move || Box::new(StartPump(m.clone()))));
    let watch = RssWatch::start();
    let before = rss_kib();
    let client = client_then_stop(&reactor, move || {
        paced_reader(connect(addr), 20.0 * 1024.0 * 1024.0)
    });
    run_for(&reactor, Duration::from_secs(120));
    let (total, _) = join(client);
    let growth = watch.peak_kib().saturating_sub(before);
    assert_eq!(total, 1 << 30);
    assert!(
        max.get() <= 64 * 1024 + CHUNK,
        "the transport held {} bytes: more than the high mark plus one write",
        max.get()
    );
    assert!(growth < 16 * 1024, "RSS grew by {growth} KiB");
}

#[test]
fn file_sender_256_mib_to_a_slow_reader_keeps_memory_flat() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let path = std::env::temp_dir().join(format!("torsion-filesender-{}", std::process::id()));
    let mut expected = Sha256::new();
    {
        let mut f = std::fs::File::create(&path).unwrap();
        let block = pattern(1 << 20);
        for _ in 0..256 {
            f.write_all(&block).unwrap();
            expected.update(&block);
        }
    }
    let expected = expected.finalize().to_vec();
    let reactor = reactor();
    let result = Rc::new(Cell::new(None));
    let (p, r) = (path.clone(), result.clone());
    struct Send(std::path::PathBuf, Rc<Cell<Option<bool>>>);
    impl Protocol for Send {
        fn connection_made(&mut self, cx: &mut Cx<'_>) {
            let file = std::fs::File::open(&self.0).unwrap();
            let (handle, result) = (cx.handle(), self.1.clone());
            FileSender::begin_file_transfer(cx.transport(), file, None).on_result(move |res| {
                result.set(Some(res.is_ok()));
                handle.lose_connection();
            });
        }
    }
    let addr = listen(
        &reactor,
        factory(move || Box::new(Send(p.clone(), r.clone()))),
    );
    let watch = RssWatch::start();
    let before = rss_kib();
    let client = client_then_stop(&reactor, move || {
        paced_reader(connect(addr), 200.0 * 1024.0 * 1024.0)
    });
    run_for(&reactor, Duration::from_secs(60));
    let (total, hash) = join(client);
    let growth = watch.peak_kib().saturating_sub(before);
    let _ = std::fs::remove_file(&path);
    assert_eq!(total, 256 << 20);
    assert_eq!(
        hash, expected,
        "the bytes that arrived differ from the file"
    );
    assert_eq!(result.get(), Some(true), "the Deferred fires with success");
    assert!(growth < 16 * 1024, "RSS grew by {growth} KiB");
}
