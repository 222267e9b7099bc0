//! Flow control: producers, consumers and write-buffer water marks (Twisted's
//! `IPushProducer`, `IPullProducer` and `IConsumer.registerProducer`).
//!
//! A transport is the consumer. A **streaming** (push) producer writes whenever it likes and is
//! paused when more than the high water mark is buffered, then resumed once the buffer falls to
//! the low water mark. A **pull** producer is asked for more (`resume_producing`) at once and
//! each time the buffer drains, and is never paused.
//!
//! Deliberate differences from Twisted, both forced or chosen for bounded memory:
//! - Twisted resumes a push producer only when the buffer is completely empty; torsion resumes
//!   it at the low water mark (16 KiB by default, [`Transport::set_write_buffer_limits`]), so
//!   the pipe never runs dry while the producer wakes up.
//! - Producer callbacks never run inside `write` or `register_producer`: the transport is
//!   lent to the caller at that moment. They run right after the current callback returns,
//!   before the reactor polls again. A producer that fills the buffer from
//!   `resume_producing` is paused in that same cycle.
//!
//! [`Transport::set_write_buffer_limits`]: crate::Transport::set_write_buffer_limits

use crate::{ConnectionHandle, Cx};

/// Default high water mark: pause a push producer when more than this is buffered (as
/// Twisted's `bufferSize`, 64 KiB, strict).
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Default low water mark: resume a paused push producer when the buffer falls to this.
pub const DEFAULT_LOW_WATER: usize = 16 * 1024;

/// Something that writes into a transport and can be told to slow down.
///
/// Each callback gets a [`Cx`] whose transport is the consumer the producer is registered on.
///
/// ```
/// use torsion::{Cx, Producer};
///
/// /// Writes a fixed number of chunks, one per request (a pull producer).
/// struct Chunks(usize);
/// impl Producer for Chunks {
///     fn resume_producing(&mut self, cx: &mut Cx<'_>) {
///         if self.0 == 0 {
///             cx.transport().unregister_producer();
///             cx.transport().lose_connection();
///         } else {
///             self.0 -= 1;
///             cx.transport().write(&[b'x'; 16384]);
///         }
///     }
/// }
/// ```
pub trait Producer: 'static {
    /// Stop writing for now (push producers only).
    fn pause_producing(&mut self, cx: &mut Cx<'_>) {
        let _ = cx;
    }

    /// Write more: for a push producer, carry on after a pause; for a pull producer, write
    /// the next piece.
    fn resume_producing(&mut self, cx: &mut Cx<'_>);

    /// The consumer is going away: stop for good.
    fn stop_producing(&mut self, cx: &mut Cx<'_>) {
        let _ = cx;
    }
}

/// A connection used as the producer of another: pausing it stops reading from it. This is
/// how a proxy ties two connections together (Twisted's
/// `transport.registerProducer(peer.transport, True)`).
impl Producer for ConnectionHandle {
    fn pause_producing(&mut self, _cx: &mut Cx<'_>) {
        ConnectionHandle::pause_producing(self);
    }

    fn resume_producing(&mut self, _cx: &mut Cx<'_>) {
        ConnectionHandle::resume_producing(self);
    }

    fn stop_producing(&mut self, _cx: &mut Cx<'_>) {
        self.lose_connection();
    }
}

/// Why [`Transport::register_producer`](crate::Transport::register_producer) refused a
/// producer. The producer is handed back.
#[derive(thiserror::Error)]
pub enum RegisterProducerError {
    /// A producer is already registered (Twisted raises `RuntimeError`).
    #[error("a producer is already registered on this transport")]
    AlreadyRegistered(Box<dyn Producer>),
    /// The transport is closed or closing; consider the producer stopped (Twisted calls
    /// `stopProducing` at once).
    #[error("the transport is disconnected")]
    Disconnected(Box<dyn Producer>),
}

impl std::fmt::Debug for RegisterProducerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RegisterProducerError::AlreadyRegistered(_) => "AlreadyRegistered",
            RegisterProducerError::Disconnected(_) => "Disconnected",
        })
    }
}

/// A crossing of a water mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crossing {
    /// The buffer went above the high mark: pause writers.
    Pause,
    /// The buffer fell to the low mark: resume writers.
    Resume,
}

/// The water-mark state machine of one write buffer, with no I/O in it.
///
/// ```
/// use torsion::producer::{Crossing, WaterMarks};
/// let mut m = WaterMarks::default();
/// assert_eq!(m.update(65_536), None);                 // exactly the mark: no pause
/// assert_eq!(m.update(65_537), Some(Crossing::Pause)); // one more byte: pause
/// assert_eq!(m.update(20_000), None);                 // above the low mark: stay paused
/// assert_eq!(m.update(16_384), Some(Crossing::Resume));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaterMarks {
    high: usize,
    low: usize,
    paused: bool,
}

impl Default for WaterMarks {
    fn default() -> Self {
        WaterMarks::new(DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER)
    }
}

impl WaterMarks {
    /// Marks with `high` and `low` (`low` is clamped to `high`).
    pub fn new(high: usize, low: usize) -> Self {
        WaterMarks {
            high,
            low: low.min(high),
            paused: false,
        }
    }

    /// The (high, low) marks.
    pub fn limits(&self) -> (usize, usize) {
        (self.high, self.low)
    }

    /// True between a `Pause` crossing and the next `Resume`.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Feeds the current buffered size; returns the crossing it causes, if any.
    pub fn update(&mut self, buffered: usize) -> Option<Crossing> {
        if !self.paused && buffered > self.high {
            self.paused = true;
            Some(Crossing::Pause)
        } else if self.paused && buffered <= self.low {
            self.paused = false;
            Some(Crossing::Resume)
        } else {
            None
        }
    }
}
