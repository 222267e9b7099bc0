//! Fairness: a connection that always has data cannot starve the others, nor the timers.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use torsion::{Cx, Protocol, Reactor};

/// Each ping-pong round trip must finish within this, while another connection floods the
/// same reactor. On loopback an idle round trip takes well under a millisecond; with a read
/// budget per connection per loop pass the flood costs the ping at most a few 64 KiB reads
/// per pass. 200 ms leaves room for a loaded two-core machine and a debug build, and is still
/// far below what starvation costs: without a budget, the ping would wait until the flood
/// stops (the whole test).
const RTT_BOUND: Duration = Duration::from_millis(200);
const PINGS: usize = 50;
/// How late a 10 ms periodic timer may fire during the flood, for the same reasons.
const TIMER_LATENESS_BOUND: Duration = Duration::from_millis(200);

/// Counts and checksums what arrives, then drops it. The checksum makes reading slower than
/// the flooding writer, so the flooded socket nearly always has data waiting: a reactor that
/// read each socket until `WouldBlock` would stay on it for seconds.
struct Counting(Rc<Cell<u64>>, u64);

impl Protocol for Counting {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        let _ = cx;
    }
    fn data_received(&mut self, _cx: &mut Cx<'_>, data: &[u8]) {
        self.0.set(self.0.get() + data.len() as u64);
        for &b in data.iter().step_by(8) {
            self.1 = self.1.rotate_left(5) ^ u64::from(b);
        }
        std::hint::black_box(self.1);
    }
}

struct NoDelayEcho;

impl Protocol for NoDelayEcho {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        let _ = cx.transport().set_tcp_nodelay(true);
    }
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

#[test]
fn a_flooding_connection_does_not_starve_ping_pong_or_timers() {
    let r = reactor();
    let flooded = Rc::new(Cell::new(0u64));
    let f = flooded.clone();
    let discard = listen(&r, factory(move || Box::new(Counting(f.clone(), 0))));
    let echo = listen(&r, factory(|| Box::new(NoDelayEcho)));

    // A periodic 10 ms timer, recording how late each tick is.
    let lateness: Rc<RefCell<Vec<Duration>>> = Rc::default();
    fn tick(r: &Reactor, due: Instant, lateness: Rc<RefCell<Vec<Duration>>>) {
        lateness
            .borrow_mut()
            .push(Instant::now().saturating_duration_since(due));
        let next = Instant::now() + Duration::from_millis(10);
        r.call_later(Duration::from_millis(10), move |r| tick(r, next, lateness));
    }
    let l = lateness.clone();
    r.call_later(Duration::from_millis(10), move |r| {
        // Only measured once the flood is on: see `flood_on` below.
        tick(r, Instant::now(), l)
    });

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let (stop2, written2) = (stop.clone(), written.clone());
    let flooder = std::thread::spawn(move || {
        let mut s = connect(discard);
        let chunk = vec![0x5a_u8; 64 * 1024];
        while !stop2.load(Ordering::Relaxed) {
            match s.write(&chunk) {
                Ok(n) => {
                    written2.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(_) => break,
            }
        }
    });

    let (stop3, written3) = (stop.clone(), written.clone());
    let pinger = client_then_stop(&r, move || {
        // End the flood however this thread ends.
        struct EndFlood(Arc<AtomicBool>);
        impl Drop for EndFlood {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _end = EndFlood(stop3);
        // Wait for the flood to be under way.
        let t0 = Instant::now();
        while written3.load(Ordering::Relaxed) < 8 * 1024 * 1024 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "precondition: the flood did not start"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut s = connect(echo);
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(RTT_BOUND * 10)).unwrap();
        let flood_start = written3.load(Ordering::Relaxed);
        let ping_start = Instant::now();
        let mut rtts = Vec::with_capacity(PINGS);
        for i in 0..PINGS {
            let msg = format!("ping{i:04}");
            let t = Instant::now();
            s.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0u8; msg.len()];
            let res = s.read_exact(&mut back);
            rtts.push(t.elapsed());
            if res.is_err() {
                // Starved: no answer within ten times the bound.
                break;
            }
            assert_eq!(back, msg.as_bytes());
            std::thread::sleep(Duration::from_millis(10));
        }
        let flood_during = written3.load(Ordering::Relaxed) - flood_start;
        let ping_window = ping_start.elapsed();
        (rtts, flood_during, ping_window)
    });

    run_for(&r, Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    let (rtts, flood_during, ping_window) = join(pinger);
    let _ = flooder.join();

    let worst = rtts.iter().max().unwrap();
    let worst_tick = lateness.borrow().iter().max().copied();
    eprintln!(
        "flood: {flood_during} bytes in {ping_window:?}; worst round trip {worst:?}; worst \
         timer lateness {worst_tick:?}"
    );
    assert!(
        rtts.iter().all(|rtt| *rtt < RTT_BOUND),
        "a ping-pong round trip took {worst:?} during the flood (bound {RTT_BOUND:?}); all: \
         {rtts:?}"
    );
    assert_eq!(rtts.len(), PINGS);
    assert!(
        flood_during >= 4 * 1024 * 1024,
        "precondition: the flood must go on while pinging, but only {flood_during} bytes \
         went out in {ping_window:?}"
    );
    assert!(flooded.get() > 0);
    let lateness = lateness.borrow();
    assert!(
        lateness.len() >= 20,
        "the timer ticked only {} times",
        lateness.len()
    );
    let worst_tick = lateness.iter().max().unwrap();
    assert!(
        *worst_tick < TIMER_LATENESS_BOUND,
        "a timer fired {worst_tick:?} late during the flood"
    );
}
