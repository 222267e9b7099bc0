//! [`ReconnectingClientFactory`]: reconnect with exponential backoff (Twisted's
//! `ReconnectingClientFactory`, with the 26.x formula).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::task::{Clock, ScheduledCall};
use crate::{
    Address, ClientFactory, ConnectError, Connector, ConnectorState, Factory, Protocol, Reason,
};

/// Why [`ReconnectingClientFactory::retry`] scheduled nothing.
///
/// ```
/// use torsion::client::RetryError;
/// use torsion::factory::from_fn;
/// use torsion::testing::Clock;
/// use torsion::ReconnectingClientFactory;
///
/// let factory = ReconnectingClientFactory::new(from_fn(|_| None), Clock::new());
/// assert_eq!(factory.retry(), Err(RetryError::NoConnector));
/// assert_eq!(RetryError::GaveUp(3).to_string(), "abandoning after 3 retries");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError {
    /// [`stop_trying`](ReconnectingClientFactory::stop_trying) was called.
    #[error("abandoning on explicit request")]
    Stopped,
    /// The retry limit was reached; this many retries were made.
    #[error("abandoning after {0} retries")]
    GaveUp(u32),
    /// No connector has used this factory yet.
    #[error("no connector to retry")]
    NoConnector,
}

/// A [`ClientFactory`] that wraps another and, when a connection attempt fails or an
/// established connection is lost, connects again after a growing delay (Twisted's
/// `ReconnectingClientFactory`).
///
/// Everything else goes to the wrapped factory: `build_protocol`, `start_factory`,
/// `stop_factory`, `started_connecting`, and `client_connection_failed` /
/// `client_connection_lost` (before the retry is scheduled; a wrapped factory that connects
/// again itself takes over, and no retry is scheduled).
///
/// **The delays** are Twisted 26.x's: with `delay` starting at `initial_delay`, each retry
/// waits `delay` (jittered: drawn from a normal distribution of mean `delay` and standard
/// deviation `delay × jitter`, never below zero), then sets `delay = min(jittered × factor,
/// max_delay)` (from the unjittered delay if the draw fell to zero: Twisted crashes there,
/// and growing from zero would retry in a tight loop). With the defaults (initial 1 s, factor e, jitter 0.119626565582, max 3600 s,
/// no retry limit) and no jitter that is 1, 2.718…, 7.389…, 20.09…, 54.6…, …, 2981, 3600,
/// 3600… seconds. With [`max_retries`](Self::max_retries)`(Some(n))` exactly `n` retries are
/// made; the next failure gives up.
///
/// **Resetting.** [`reset_delay`](Self::reset_delay) starts the backoff over. Twisted leaves
/// calling it to the user, and forgetting it is that class's most common bug, so
/// [`reset_delay_on_connect`](Self::reset_delay_on_connect)`(true)` does it whenever a
/// connection is established.
///
/// Timers go through a [`Clock`], so tests run on [`testing::Clock`](crate::testing::Clock);
/// in production pass the reactor. Keep an `Rc` of the factory to call
/// [`stop_trying`](Self::stop_trying) later.
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
/// use torsion::factory::from_fn;
/// use torsion::{ClientFactory, Protocol, Reactor, ReconnectingClientFactory};
///
/// struct Client;
/// impl Protocol for Client {}
///
/// let reactor = Reactor::new()?;
/// let factory = Rc::new(
///     ReconnectingClientFactory::new(
///         from_fn(|_| Some(Box::new(Client) as Box<dyn Protocol>)),
///         reactor.clone(),
///     )
///     .max_delay(Duration::from_secs(60))
///     .reset_delay_on_connect(true),
/// );
/// reactor.connect_tcp("127.0.0.1", 6379, factory.clone() as Rc<dyn ClientFactory>);
/// // … later, to give up for good:
/// factory.stop_trying();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReconnectingClientFactory<F, C: Clock> {
    factory: F,
    clock: C,
    max_delay: f64,
    initial_delay: f64,
    factor: f64,
    jitter: f64,
    max_retries: Option<u32>,
    reset_on_connect: bool,
    delay: Cell<f64>,
    retries: Cell<u32>,
    continue_trying: Cell<bool>,
    connector: RefCell<Option<Connector>>,
    pending: RefCell<Option<C::Call>>,
    rng: Cell<u64>,
}

impl<F, C: Clock> fmt::Debug for ReconnectingClientFactory<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectingClientFactory")
            .field("delay", &self.delay.get())
            .field("retries", &self.retries.get())
            .field("continue_trying", &self.continue_trying.get())
            .finish_non_exhaustive()
    }
}

/// Twisted's defaults.
const MAX_DELAY: f64 = 3600.0;
const INITIAL_DELAY: f64 = 1.0;
const FACTOR: f64 = std::f64::consts::E;
const JITTER: f64 = 0.119626565582;

impl<F: ClientFactory, C: Clock + 'static> ReconnectingClientFactory<F, C>
where
    C::Call: 'static,
{
    /// Wraps `factory`, scheduling retries on `clock`, with Twisted's defaults.
    pub fn new(factory: F, clock: C) -> Self {
        // The time, and a count so that factories made in the same instant differ.
        static MADE: AtomicU64 = AtomicU64::new(0);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ MADE.fetch_add(1, Ordering::Relaxed).rotate_left(40);
        ReconnectingClientFactory {
            factory,
            clock,
            max_delay: MAX_DELAY,
            initial_delay: INITIAL_DELAY,
            factor: FACTOR,
            jitter: JITTER,
            max_retries: None,
            reset_on_connect: false,
            delay: Cell::new(INITIAL_DELAY),
            retries: Cell::new(0),
            continue_trying: Cell::new(true),
            connector: RefCell::new(None),
            pending: RefCell::new(None),
            rng: Cell::new(splitmix(seed)),
        }
    }

    /// The longest delay before jitter (default 3600 s).
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max.as_secs_f64();
        self
    }

    /// The first delay (default 1 s); also where [`reset_delay`](Self::reset_delay) goes back
    /// to.
    pub fn initial_delay(mut self, initial: Duration) -> Self {
        self.initial_delay = initial.as_secs_f64();
        self.delay.set(self.initial_delay);
        self
    }

    /// How much the delay grows after each retry (default e). Not finite or below zero
    /// counts as 1.
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() && factor >= 0.0 {
            factor
        } else {
            1.0
        };
        self
    }

    /// The standard deviation of a delay, as a fraction of it (default 0.119626565582); 0
    /// turns jitter off. Not finite or below zero counts as 0.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() && jitter > 0.0 {
            jitter
        } else {
            0.0
        };
        self
    }

    /// At most this many retries (`None`, the default: no limit).
    pub fn max_retries(mut self, max: Option<u32>) -> Self {
        self.max_retries = max;
        self
    }

    /// Whether an established connection resets the backoff (off by default, as in
    /// Twisted): the delay goes back to the initial one and the retry count to zero when the
    /// connection is made (at `build_protocol`). Unlike [`reset_delay`](Self::reset_delay),
    /// this does not undo a [`stop_trying`](Self::stop_trying).
    pub fn reset_delay_on_connect(mut self, on: bool) -> Self {
        self.reset_on_connect = on;
        self
    }

    /// Seeds the jitter's random numbers, for reproducible delays (by default the seed comes
    /// from the time).
    pub fn seed(self, seed: u64) -> Self {
        self.rng.set(splitmix(seed));
        self
    }

    /// The wrapped factory.
    pub fn factory(&self) -> &F {
        &self.factory
    }

    /// The clock retries are scheduled on.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The delay the next retry starts from, before jitter.
    pub fn next_delay(&self) -> Duration {
        secs(self.delay.get())
    }

    /// Retries made since the last reset.
    pub fn retries(&self) -> u32 {
        self.retries.get()
    }

    /// False after [`stop_trying`](Self::stop_trying), until [`reset_delay`](Self::reset_delay).
    pub fn continue_trying(&self) -> bool {
        self.continue_trying.get()
    }

    /// The connector this factory last saw.
    pub fn connector(&self) -> Option<Connector> {
        self.connector.borrow().clone()
    }

    /// Schedules the next connection attempt of the last connector seen, and says how long it
    /// waits (Twisted's `retry`). Failures and lost connections call this themselves.
    pub fn retry(&self) -> Result<Duration, RetryError> {
        let connector = self.connector().ok_or(RetryError::NoConnector)?;
        self.retry_with(connector)
    }

    fn retry_with(&self, connector: Connector) -> Result<Duration, RetryError> {
        if !self.continue_trying.get() {
            tracing::info!(destination = %connector.destination_address(), "abandoning on explicit request");
            return Err(RetryError::Stopped);
        }
        let retries = self.retries.get().saturating_add(1);
        self.retries.set(retries);
        if let Some(max) = self.max_retries {
            if retries > max {
                tracing::info!(destination = %connector.destination_address(), "abandoning after {max} retries");
                return Err(RetryError::GaveUp(max));
            }
        }
        let nominal = self.delay.get();
        let delay = if self.jitter > 0.0 {
            self.normal(nominal, nominal * self.jitter).max(0.0)
        } else {
            nominal
        };
        let wait = secs(delay);
        tracing::info!(destination = %connector.destination_address(), "will retry in {wait:?}");
        let call = self.clock.call_later(wait, move || {
            if connector.state() == ConnectorState::Disconnected {
                let _ = connector.connect();
            }
        });
        let previous = self.pending.borrow_mut().replace(call);
        if let Some(p) = previous.filter(|p| p.active()) {
            let _ = p.cancel();
        }
        // As in Twisted the jittered delay is what grows; one clamped to zero would stay
        // zero for good (a tight reconnect loop), so growth then starts from the nominal one.
        let base = if delay > 0.0 { delay } else { nominal };
        self.delay.set((base * self.factor).min(self.max_delay));
        Ok(wait)
    }

    /// Stops reconnecting: cancels the pending retry and stops an attempt in progress
    /// ([`Connector::stop_connecting`]); an established connection stays up (Twisted's
    /// `stopTrying`).
    pub fn stop_trying(&self) {
        let pending = self.pending.borrow_mut().take();
        if let Some(p) = pending.filter(|p| p.active()) {
            let _ = p.cancel();
        }
        self.continue_trying.set(false);
        if let Some(c) = self.connector() {
            let _ = c.stop_connecting();
        }
    }

    /// Starts the backoff over: the initial delay, no retries so far, and trying again after
    /// a [`stop_trying`](Self::stop_trying) (Twisted's `resetDelay`).
    pub fn reset_delay(&self) {
        self.delay.set(self.initial_delay);
        self.retries.set(0);
        self.continue_trying.set(true);
    }

    fn remember(&self, connector: &Connector) {
        *self.connector.borrow_mut() = Some(connector.clone());
    }

    /// After a failure or a loss: retry, unless told to stop or the wrapped factory already
    /// connected again.
    fn after_failure(&self, connector: &Connector) {
        self.remember(connector);
        if self.continue_trying.get() && connector.state() == ConnectorState::Disconnected {
            let _ = self.retry_with(connector.clone());
        }
    }

    /// A draw from the normal distribution (Box–Muller, as Python's `normalvariate` is in
    /// spirit) on a splitmix64 stream.
    fn normal(&self, mean: f64, sd: f64) -> f64 {
        let next = || {
            let x = splitmix(self.rng.get());
            self.rng.set(x);
            // 53 random bits in (0, 1].
            ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64
        };
        let (u1, u2) = (next(), next());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        mean + sd * z
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

/// One step of splitmix64: a good 64-bit mix, enough for jitter.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<F: ClientFactory, C: Clock + 'static> Factory for ReconnectingClientFactory<F, C>
where
    C::Call: 'static,
{
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        if self.reset_on_connect {
            self.delay.set(self.initial_delay);
            self.retries.set(0);
        }
        self.factory.build_protocol(addr)
    }

    fn start_factory(&self) {
        self.factory.start_factory();
    }

    fn stop_factory(&self) {
        self.factory.stop_factory();
    }
}

impl<F: ClientFactory, C: Clock + 'static> ClientFactory for ReconnectingClientFactory<F, C>
where
    C::Call: 'static,
{
    fn started_connecting(&self, connector: &Connector) {
        self.remember(connector);
        self.factory.started_connecting(connector);
    }

    fn client_connection_failed(&self, connector: &Connector, reason: ConnectError) {
        self.factory.client_connection_failed(connector, reason);
        self.after_failure(connector);
    }

    fn client_connection_lost(&self, connector: &Connector, reason: Reason) {
        self.factory.client_connection_lost(connector, reason);
        self.after_failure(connector);
    }
}

#[cfg(test)]
mod tests;
