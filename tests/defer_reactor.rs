//! Deferreds and async tasks on a real reactor: spawn, await, timers, timeouts, react, a
//! loopback connection, LoopingCall.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::defer::{Deferred, Failure, FailureKind, gather_results};
use torsion::factory::from_fn;
use torsion::task::{LoopingCall, defer_later, react_with};
use torsion::{Address, ClientFactory, Cx, Factory, Protocol, Reactor, ReactorBuilder, sleep};

mod common;
use common::{run_bounded, stop_when_done};

fn builder() -> ReactorBuilder {
    Reactor::builder().install_signal_handlers(false)
}

fn reactor() -> Reactor {
    builder().build().unwrap()
}

#[test]
fn spawn_awaits_a_timer_and_gives_the_result() {
    let reactor = reactor();
    let r = reactor.clone();
    let started = Instant::now();
    let d = reactor.spawn(async move {
        sleep(&r, Duration::from_millis(20)).await?;
        Ok(started.elapsed())
    });
    stop_when_done(&reactor, &d);
    run_bounded(&reactor);
    assert!(d.take_result().unwrap().unwrap() >= Duration::from_millis(20));
}

#[test]
fn a_ready_future_gives_a_fired_deferred_without_running_the_reactor() {
    let reactor = reactor();
    let d = reactor.spawn(async { Ok(5) });
    assert_eq!(d.take_result().unwrap().unwrap(), 5);
    let fired = torsion::defer::succeed("already");
    let e = Deferred::from_future(&reactor, async move {
        let v = fired.await?;
        Ok(v)
    });
    assert_eq!(e.take_result().unwrap().unwrap(), "already");
}

#[test]
fn await_gets_a_deferred_fired_later_and_errors_propagate_with_question_mark() {
    let reactor = reactor();
    let later = Deferred::<u32>::new();
    let failing = Deferred::<u32>::new();
    let (l, f) = (later.clone(), failing.clone());
    let d = reactor.spawn(async move {
        let a = l.await?;
        let b = f.await?;
        Ok(a + b)
    });
    reactor.call_later(Duration::from_millis(5), move |_| {
        later.callback(1).unwrap()
    });
    reactor.call_later(Duration::from_millis(10), move |_| {
        failing.errback(Failure::msg("second failed")).unwrap()
    });
    stop_when_done(&reactor, &d);
    run_bounded(&reactor);
    assert_eq!(
        d.take_result().unwrap().unwrap_err().to_string(),
        "second failed"
    );
}

#[test]
fn tasks_await_each_other() {
    let reactor = reactor();
    let r = reactor.clone();
    let inner = reactor.spawn(async move {
        sleep(&r, Duration::from_millis(5)).await?;
        Ok(20)
    });
    let d = reactor.spawn(async move { Ok(inner.await? + 1) });
    let r2 = reactor.clone();
    let many = gather_results(
        (0..50)
            .map(|i| {
                let r = r2.clone();
                r2.spawn(async move {
                    sleep(&r, Duration::from_millis(1)).await?;
                    Ok(i)
                })
            })
            .collect::<Vec<_>>(),
        false,
    );
    let both = gather_results(vec![d.clone(), many.map(|v| v.len() as i32)], false);
    stop_when_done(&reactor, &both);
    run_bounded(&reactor);
    assert_eq!(both.take_result().unwrap().unwrap(), vec![21, 50]);
}

struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn cancelling_a_task_drops_the_future_and_cancels_what_it_awaited() {
    let reactor = reactor();
    let dropped = Rc::new(Cell::new(false));
    let awaited = Deferred::<()>::new();
    let (flag, a) = (DropFlag(dropped.clone()), awaited.clone());
    let d = reactor.spawn(async move {
        let _flag = flag;
        a.await?;
        Ok(())
    });
    assert!(!d.called());
    d.cancel();
    assert!(dropped.get(), "the future was dropped");
    assert!(awaited.called(), "the awaited Deferred was cancelled");
    assert_eq!(
        d.take_result().unwrap().unwrap_err().kind(),
        FailureKind::Cancelled
    );
}

#[test]
fn a_panicking_task_fails_its_deferred() {
    let reactor = reactor();
    let d = reactor.spawn(async {
        if true {
            panic!("task exploded");
        }
        Ok(())
    });
    let f = d.take_result().unwrap().unwrap_err();
    assert_eq!(f.kind(), FailureKind::Panicked);
    assert!(f.to_string().contains("task exploded"));
}

#[test]
fn add_timeout_on_the_reactor_both_ways() {
    let reactor = reactor();
    let slow = Deferred::<u8>::new();
    slow.add_timeout(&reactor, Duration::from_millis(10));
    let fast = Deferred::<u8>::new();
    fast.add_timeout(&reactor, Duration::from_secs(60));
    let f = fast.clone();
    reactor.call_later(Duration::from_millis(1), move |_| f.callback(3).unwrap());
    let both = gather_results(
        vec![
            slow.clone().then(|r| Ok(r.map_err(|f| f.kind()))),
            fast.clone().then(|r| Ok(r.map_err(|f| f.kind()))),
        ],
        false,
    );
    stop_when_done(&reactor, &both);
    let started = Instant::now();
    run_bounded(&reactor);
    assert!(started.elapsed() < Duration::from_secs(5));
    let results = both.take_result().unwrap().unwrap();
    assert_eq!(results, vec![Err(FailureKind::TimedOut), Ok(3)]);
}

#[test]
fn defer_later_on_the_reactor() {
    let reactor = reactor();
    let started = Instant::now();
    let d = defer_later(&reactor, Duration::from_millis(15), move || {
        Ok(started.elapsed())
    });
    stop_when_done(&reactor, &d);
    run_bounded(&reactor);
    assert!(d.take_result().unwrap().unwrap() >= Duration::from_millis(15));
}

#[test]
fn react_gives_the_exit_code() {
    let ok = react_with(builder(), |r| async move {
        sleep(&r, Duration::from_millis(2)).await?;
        Ok(())
    });
    assert_eq!(ok, 0);
    let failed = react_with(builder(), |_| async {
        Err::<(), _>(Failure::msg("main failed"))
    });
    assert_eq!(failed, 1);
}

#[test]
fn looping_call_on_the_reactor() {
    let reactor = reactor();
    let ticks = Rc::new(Cell::new(0));
    let holder: Rc<RefCell<Option<LoopingCall<Reactor>>>> = Rc::default();
    let (t, h) = (ticks.clone(), holder.clone());
    let lc = LoopingCall::new(reactor.clone(), move || {
        t.set(t.get() + 1);
        if t.get() == 3 {
            h.borrow().as_ref().unwrap().stop().unwrap();
        }
    });
    *holder.borrow_mut() = Some(lc.clone());
    let done = lc.start(Duration::from_millis(2), true).unwrap();
    stop_when_done(&reactor, &done);
    run_bounded(&reactor);
    holder.borrow_mut().take();
    assert_eq!(ticks.get(), 3);
    assert!(done.take_result().unwrap().is_ok());
}

/// Echoes what it receives.
struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

/// A client that reports through Deferreds: connected, then the first data.
struct Client {
    connected: Deferred<torsion::ConnectionHandle>,
    data: Deferred<Vec<u8>>,
}

impl Protocol for Client {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        let _ = self.connected.callback(cx.handle());
    }
    fn data_received(&mut self, _cx: &mut Cx<'_>, data: &[u8]) {
        let _ = self.data.callback(data.to_vec());
    }
}

struct ClientMaker {
    client: RefCell<Option<Client>>,
}

impl Factory for ClientMaker {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        self.client
            .borrow_mut()
            .take()
            .map(|c| Box::new(c) as Box<dyn Protocol>)
    }
}

impl ClientFactory for ClientMaker {}

#[test]
fn spawn_awaits_a_real_loopback_connection() {
    let reactor = reactor();
    let port = reactor
        .listen_tcp(
            0,
            Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>))),
        )
        .unwrap();
    let Address::Tcp(addr) = port.host() else {
        panic!("not a TCP address")
    };
    let (connected, data) = (Deferred::new(), Deferred::new());
    let factory = Rc::new(ClientMaker {
        client: RefCell::new(Some(Client {
            connected: connected.clone(),
            data: data.clone(),
        })),
    });
    let r = reactor.clone();
    let d = reactor.spawn(async move {
        r.connect_tcp("127.0.0.1", addr.port(), factory);
        let conn = connected
            .add_timeout(&r, Duration::from_secs(2))
            .clone()
            .await?;
        conn.write(b"ping");
        let echoed = data.await?;
        conn.lose_connection();
        Ok(echoed)
    });
    stop_when_done(&reactor, &d);
    run_bounded(&reactor);
    assert_eq!(d.take_result().unwrap().unwrap(), b"ping");
}

#[test]
fn pending_tasks_are_dropped_at_shutdown() {
    let reactor = reactor();
    let dropped = Rc::new(Cell::new(false));
    let flag = DropFlag(dropped.clone());
    let never = Deferred::<()>::new();
    let n = never.clone();
    let d = reactor.spawn(async move {
        let _flag = flag;
        n.await?;
        Ok(())
    });
    reactor.call_later(Duration::from_millis(1), |r| r.stop().unwrap());
    run_bounded(&reactor);
    assert!(dropped.get(), "the task's future was dropped at shutdown");
    assert!(!d.called());
}

/// Futures of every size run as tasks (small ones in recycled cells, big ones in their own
/// allocation), finished at once or later, and are dropped once.
#[test]
fn tasks_of_any_size_run_and_drop_once() {
    struct Counted(Rc<Cell<u32>>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let reactor = reactor();
    let drops = Rc::new(Cell::new(0));
    let mut pending = Vec::new();
    for round in 0..4u64 {
        let c = Counted(drops.clone());
        let small = reactor.spawn(async move {
            let _c = c;
            Ok(round)
        });
        assert_eq!(small.take_result().unwrap().unwrap(), round);
        let c = Counted(drops.clone());
        // Captured, so the future holds all 1 KiB of it: too big for a recycled cell.
        let pad = std::hint::black_box([round; 128]);
        let big = reactor.spawn(async move {
            let _c = c;
            Ok(pad.iter().sum::<u64>())
        });
        assert_eq!(big.take_result().unwrap().unwrap(), round * 128);
        let gate = Deferred::<u64>::new();
        let g = gate.clone();
        let c = Counted(drops.clone());
        let later = reactor.spawn(async move {
            let _c = c;
            Ok(g.await? * 2)
        });
        assert!(later.take_result().is_none());
        pending.push((round, gate, later));
    }
    assert_eq!(drops.get(), 8);
    for (round, gate, _) in &pending {
        gate.callback(*round).unwrap();
    }
    let stop = reactor.clone();
    reactor.call_later(Duration::from_millis(1), move |_| stop.stop().unwrap());
    run_bounded(&reactor);
    for (round, _, later) in &pending {
        assert_eq!(later.take_result().unwrap().unwrap(), round * 2);
    }
    assert_eq!(drops.get(), 12);
}
