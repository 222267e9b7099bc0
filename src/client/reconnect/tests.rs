//! `ReconnectingClientFactory` on `testing::Clock`. The connectors are real ones on a reactor
//! that never runs: an attempt stays "connecting" until the test ends it with
//! `stop_connecting`, which reports a failure exactly as a refused connect would.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::testing::Clock as TestClock;
use crate::{Reactor, TcpConnectOptions};

/// What the wrapped factory saw.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Start,
    Stop,
    Build,
    Started,
    Failed(String),
    Lost(String),
}

#[derive(Default)]
struct Recorder {
    log: Rc<RefCell<Vec<Seen>>>,
}

impl Factory for Recorder {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        self.log.borrow_mut().push(Seen::Build);
        None
    }
    fn start_factory(&self) {
        self.log.borrow_mut().push(Seen::Start);
    }
    fn stop_factory(&self) {
        self.log.borrow_mut().push(Seen::Stop);
    }
}

impl ClientFactory for Recorder {
    fn started_connecting(&self, _c: &Connector) {
        self.log.borrow_mut().push(Seen::Started);
    }
    fn client_connection_failed(&self, _c: &Connector, reason: ConnectError) {
        self.log.borrow_mut().push(Seen::Failed(reason.to_string()));
    }
    fn client_connection_lost(&self, _c: &Connector, reason: Reason) {
        self.log.borrow_mut().push(Seen::Lost(reason.to_string()));
    }
}

type Rcf = ReconnectingClientFactory<Recorder, TestClock>;

struct Setup {
    _reactor: Reactor,
    clock: TestClock,
    rcf: Rc<Rcf>,
    connector: Connector,
    log: Rc<RefCell<Vec<Seen>>>,
}

fn setup(configure: impl FnOnce(Rcf) -> Rcf) -> Setup {
    let reactor = Reactor::builder()
        .install_signal_handlers(false)
        .build()
        .unwrap();
    let clock = TestClock::new();
    let recorder = Recorder::default();
    let log = recorder.log.clone();
    let rcf = Rc::new(configure(ReconnectingClientFactory::new(
        recorder,
        clock.clone(),
    )));
    let opts = TcpConnectOptions {
        timeout: None,
        bind_address: None,
    };
    let connector = reactor.connect_tcp_with("127.0.0.1", 9, rcf.clone(), opts);
    Setup {
        _reactor: reactor,
        clock,
        rcf,
        connector,
        log,
    }
}

impl Setup {
    /// Fails the attempt in progress; gives the delay of the retry it scheduled, if any.
    fn fail(&self) -> Option<f64> {
        assert_eq!(self.connector.state(), ConnectorState::Connecting);
        self.connector.stop_connecting().unwrap();
        let calls = self.clock.calls();
        assert!(calls.len() <= 1, "one pending retry at most");
        calls
            .first()
            .map(|c| c.time().unwrap() - self.clock.seconds())
    }

    /// Fails, then lets the retry run; gives its delay.
    fn fail_and_retry(&self) -> f64 {
        let delay = self.fail().expect("a retry was scheduled");
        self.clock.advance(secs(delay));
        assert_eq!(self.connector.state(), ConnectorState::Connecting);
        delay
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.max(1.0)
}

#[test]
fn delays_follow_the_26x_formula_up_to_the_cap() {
    let s = setup(|f| f.jitter(0.0));
    let e = std::f64::consts::E;
    let expected = [
        1.0,
        e,
        e * e,
        e.powi(3),
        e.powi(4),
        e.powi(5),
        e.powi(6),
        e.powi(7),
        e.powi(8),
        3600.0,
        3600.0,
        3600.0,
    ];
    for (i, want) in expected.iter().enumerate() {
        let got = s.fail_and_retry();
        assert!(close(got, *want), "retry {i}: {got} s, expected {want} s");
    }
    assert!(close(20.085536923, e.powi(3)));
    assert_eq!(s.rcf.retries(), expected.len() as u32);
    // As in Twisted, the connector stops the factory after each failure (nobody connected
    // again synchronously) and starts it again with each retry.
    let log = s.log.borrow();
    let starts = log.iter().filter(|e| **e == Seen::Start).count();
    assert_eq!(starts, expected.len() + 1);
}

#[test]
fn custom_settings_shape_the_delays() {
    let s = setup(|f| {
        f.jitter(0.0)
            .initial_delay(Duration::from_millis(500))
            .factor(2.0)
            .max_delay(Duration::from_secs(3))
    });
    let got: Vec<f64> = (0..5).map(|_| s.fail_and_retry()).collect();
    assert_eq!(got, [0.5, 1.0, 2.0, 3.0, 3.0]);
}

#[test]
fn max_retries_gives_exactly_that_many() {
    for n in [0u32, 1, 3] {
        let s = setup(|f| f.jitter(0.0).max_retries(Some(n)));
        for _ in 0..n {
            s.fail_and_retry();
        }
        assert_eq!(s.fail(), None, "no retry after {n}");
        assert_eq!(s.connector.state(), ConnectorState::Disconnected);
        assert_eq!(s.rcf.retry(), Err(RetryError::GaveUp(n)));
        // The connector gave up too, so the factory was stopped.
        assert_eq!(s.log.borrow().last(), Some(&Seen::Stop));
        let attempts = s
            .log
            .borrow()
            .iter()
            .filter(|e| **e == Seen::Started)
            .count();
        assert_eq!(attempts as u32, n + 1);
    }
}

#[test]
fn stop_trying_cancels_the_pending_retry() {
    let s = setup(|f| f.jitter(0.0));
    s.fail_and_retry();
    assert!(s.fail().is_some());
    s.rcf.stop_trying();
    assert!(s.clock.calls().is_empty());
    assert!(!s.rcf.continue_trying());
    s.clock.advance(Duration::from_secs(7200));
    assert_eq!(s.connector.state(), ConnectorState::Disconnected);
    assert_eq!(s.rcf.retry(), Err(RetryError::Stopped));
}

#[test]
fn stop_trying_while_connecting_stops_the_attempt() {
    let s = setup(|f| f.jitter(0.0));
    s.rcf.stop_trying();
    assert_eq!(s.connector.state(), ConnectorState::Disconnected);
    assert!(s.clock.calls().is_empty(), "no retry after stop_trying");
    let log = s.log.borrow();
    assert!(matches!(log.iter().rev().nth(1), Some(Seen::Failed(r)) if r.contains("aborted")));
    assert_eq!(log.last(), Some(&Seen::Stop));
}

#[test]
fn reset_delay_starts_over_and_undoes_stop_trying() {
    let s = setup(|f| f.jitter(0.0));
    for _ in 0..3 {
        s.fail_and_retry();
    }
    assert!(s.rcf.next_delay() > Duration::from_secs(20));
    s.rcf.stop_trying();
    s.rcf.reset_delay();
    assert_eq!(
        (s.rcf.next_delay(), s.rcf.retries(), s.rcf.continue_trying()),
        (Duration::from_secs(1), 0, true)
    );
    assert_eq!(s.rcf.retry(), Ok(Duration::from_secs(1)));
    s.clock.advance(Duration::from_secs(1));
    assert_eq!(s.connector.state(), ConnectorState::Connecting);
}

#[test]
fn reset_on_connect_is_opt_in() {
    let addr = Address::Tcp("127.0.0.1:9".parse().unwrap());
    for on in [false, true] {
        let s = setup(|f| f.jitter(0.0).reset_delay_on_connect(on));
        for _ in 0..3 {
            s.fail_and_retry();
        }
        // A connection is made: the reactor asks for its protocol.
        assert!(s.rcf.build_protocol(&addr).is_none());
        assert_eq!(s.log.borrow().last(), Some(&Seen::Build));
        let (delay, retries) = (s.rcf.next_delay(), s.rcf.retries());
        if on {
            assert_eq!((delay, retries), (Duration::from_secs(1), 0));
        } else {
            assert_eq!(retries, 3);
            assert!(close(delay.as_secs_f64(), std::f64::consts::E.powi(3)));
        }
    }
    // It does not undo stop_trying.
    let s = setup(|f| f.reset_delay_on_connect(true));
    s.rcf.stop_trying();
    s.rcf.build_protocol(&addr);
    assert!(!s.rcf.continue_trying());
}

#[test]
fn a_lost_connection_retries_too_and_everything_is_delegated() {
    let s = setup(|f| f.jitter(0.0));
    s.rcf
        .client_connection_lost(&s.connector, Reason::ConnectionDone);
    // Still connecting, so the wrapped factory was told but no retry was scheduled.
    assert!(s.clock.calls().is_empty());
    s.connector.stop_connecting().unwrap();
    s.rcf.start_factory();
    s.rcf.stop_factory();
    let log = s.log.borrow();
    let kinds: Vec<&str> = log
        .iter()
        .map(|e| match e {
            Seen::Start => "start",
            Seen::Stop => "stop",
            Seen::Build => "build",
            Seen::Started => "started",
            Seen::Failed(_) => "failed",
            Seen::Lost(_) => "lost",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "start", "started", "lost", "failed", "stop", "start", "stop"
        ]
    );
    assert_eq!(s.clock.calls().len(), 1, "the failure scheduled a retry");
}

#[test]
fn a_wrapped_factory_that_reconnects_itself_takes_over() {
    struct Eager;
    impl Factory for Eager {
        fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
            None
        }
    }
    impl ClientFactory for Eager {
        fn client_connection_failed(&self, c: &Connector, _: ConnectError) {
            c.connect().unwrap();
        }
    }
    let reactor = Reactor::builder()
        .install_signal_handlers(false)
        .build()
        .unwrap();
    let clock = TestClock::new();
    let rcf = Rc::new(ReconnectingClientFactory::new(Eager, clock.clone()));
    let c = reactor.connect_tcp("127.0.0.1", 9, rcf.clone());
    c.stop_connecting().unwrap();
    assert_eq!(c.state(), ConnectorState::Connecting);
    assert!(clock.calls().is_empty());
    assert_eq!(rcf.retries(), 0);
}

#[test]
fn retry_needs_a_connector() {
    let rcf = ReconnectingClientFactory::new(Recorder::default(), TestClock::new());
    assert_eq!(rcf.retry(), Err(RetryError::NoConnector));
    assert!(rcf.connector().is_none());
}

#[test]
fn jitter_is_normal_around_the_delay() {
    let rcf = ReconnectingClientFactory::new(Recorder::default(), TestClock::new()).seed(7);
    let n = 20_000;
    let draws: Vec<f64> = (0..n).map(|_| rcf.normal(100.0, 10.0)).collect();
    let mean = draws.iter().sum::<f64>() / n as f64;
    let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    assert!((mean - 100.0).abs() < 0.5, "mean {mean}");
    assert!((var.sqrt() - 10.0).abs() < 0.5, "sd {}", var.sqrt());
    let within = draws.iter().filter(|x| (**x - 100.0).abs() < 10.0).count();
    assert!((0.66..0.70).contains(&(within as f64 / n as f64)));
}

#[test]
fn the_same_seed_gives_the_same_delays() {
    let delays = |seed| {
        let s = setup(|f| f.seed(seed));
        (0..6).map(|_| s.fail_and_retry()).collect::<Vec<_>>()
    };
    assert_eq!(delays(42), delays(42));
    assert_ne!(delays(42), delays(43));
    // Default jitter stays near the nominal delays.
    for (got, i) in delays(1).iter().zip(0..) {
        let nominal = std::f64::consts::E.powi(i);
        assert!((got / nominal - 1.0).abs() < 0.8, "{got} vs {nominal}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However large the jitter, a delay is never negative (nor infinite, nor a panic), and
    /// large jitters do hit the floor of zero.
    #[test]
    fn jitter_never_gives_a_negative_delay(seed in any::<u64>(), jitter in 0.0f64..50.0) {
        let s = setup(|f| f.seed(seed).jitter(jitter));
        let mut zeros = 0;
        for _ in 0..40 {
            let wait = s.rcf.retry().unwrap();
            prop_assert!(wait < Duration::from_secs(1 << 40));
            prop_assert!(s.rcf.delay.get() >= 0.0 && s.rcf.delay.get().is_finite());
            zeros += usize::from(wait.is_zero());
        }
        prop_assert_eq!(s.clock.calls().len(), 1);
        if jitter > 20.0 {
            // Each draw is below zero with probability above 0.48.
            prop_assert!(zeros > 0);
        }
    }
}
