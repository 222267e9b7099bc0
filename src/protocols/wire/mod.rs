//! The classic small services (Twisted's `twisted.protocols.wire`): echo (RFC 862), discard
//! (RFC 863), chargen (RFC 864), quote of the day (RFC 865), daytime (RFC 867) and time
//! (RFC 868). Each comes with a factory; `torsion serve SERVICE` runs them.
//!
//! ```no_run
//! use torsion::protocols::wire::{Chargen, Daytime, Echo, Qotd};
//! use torsion::Reactor;
//!
//! let reactor = Reactor::new()?;
//! reactor.listen_tcp(7007, Echo::factory())?;
//! reactor.listen_tcp(7019, Chargen::factory())?;
//! reactor.listen_tcp(7017, Qotd::factory("Simple is better than complex.\r\n"))?;
//! reactor.listen_tcp(7013, Daytime::factory())?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Deliberate differences from Twisted
//!
//! - **Time (RFC 868) sends seconds since 1900**, as the RFC says, as an unsigned 32-bit
//!   big-endian number (it wraps in 2036, as the RFC's clients expect). Twisted sends the
//!   Unix time, packed as a signed number.
//! - **Daytime (RFC 867)** sends the RFC's suggested form in UTC, `Thursday, November 26,
//!   2026 21:16:05-UTC`; Twisted's Python 3 version fails before it writes (it adds `str`
//!   and `bytes`).
//! - **Chargen (RFC 864)** sends the RFC's rotating 72-character lines of the 95 printable
//!   characters, through a pull producer: one 7030-byte cycle of 95 lines each time the
//!   write buffer drains, so it never holds more than that for a reader that does not read.
//!   Twisted sends a fixed 72-byte string per turn with no line ends.
//! - Who (RFC 866) is not provided: it would tell strangers who is logged in.

mod chargen;
mod clock;

use std::rc::Rc;

use crate::factory::from_fn;
use crate::{Cx, Factory, Protocol};

pub use chargen::{CYCLE, Chargen, ChargenProducer, LINE};
pub use clock::{Daytime, Time, daytime_line, time_bytes};

/// RFC 862: sends back what arrives.
///
/// ```
/// use torsion::protocols::wire::Echo;
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Protocol, Reactor};
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// Echo.data_received(&mut Cx::new(&mut t, &reactor), b"ping");
/// assert_eq!(t.value(), b"ping");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl Echo {
    /// A factory of [`Echo`] protocols.
    pub fn factory() -> Rc<dyn Factory> {
        Rc::new(from_fn(|_| Some(Box::new(Echo) as Box<dyn Protocol>)))
    }
}

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

/// RFC 863: reads and drops everything.
///
/// ```
/// use torsion::protocols::wire::Discard;
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Protocol, Reactor};
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// Discard.data_received(&mut Cx::new(&mut t, &reactor), b"into the void");
/// assert!(t.value().is_empty());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Discard;

impl Discard {
    /// A factory of [`Discard`] protocols.
    pub fn factory() -> Rc<dyn Factory> {
        Rc::new(from_fn(|_| Some(Box::new(Discard) as Box<dyn Protocol>)))
    }
}

impl Protocol for Discard {}

/// Twisted's default quote.
pub const DEFAULT_QUOTE: &str = "An apple a day keeps the doctor away.\r\n";

/// RFC 865: sends a quote on connection, then closes (Twisted's `QOTD`). The quote is sent
/// as given; end it with `\r\n`.
///
/// ```
/// use torsion::protocols::wire::Qotd;
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Protocol, Reactor};
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// Qotd::default().connection_made(&mut Cx::new(&mut t, &reactor));
/// assert_eq!(t.value(), b"An apple a day keeps the doctor away.\r\n");
/// assert!(t.disconnecting());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Qotd {
    quote: Rc<str>,
}

impl Default for Qotd {
    fn default() -> Self {
        Qotd::new(DEFAULT_QUOTE)
    }
}

impl Qotd {
    /// A protocol that sends `quote`.
    pub fn new(quote: &str) -> Self {
        Qotd {
            quote: Rc::from(quote),
        }
    }

    /// A factory whose protocols all send `quote`.
    pub fn factory(quote: &str) -> Rc<dyn Factory> {
        let proto = Qotd::new(quote);
        Rc::new(from_fn(move |_| {
            Some(Box::new(proto.clone()) as Box<dyn Protocol>)
        }))
    }

    /// The quote.
    pub fn quote(&self) -> &str {
        &self.quote
    }
}

impl Protocol for Qotd {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        cx.transport().write(self.quote.as_bytes());
        cx.transport().lose_connection();
    }
}
