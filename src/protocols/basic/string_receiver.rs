//! [`StringReceiver`]: a [`Protocol`] that cuts its input into framed strings (netstrings or
//! length-prefixed) and calls a [`StringHandler`].

use std::ops::{Deref, DerefMut};

use super::int_string::IntNStringParser;
use super::netstring::{NetstringError, NetstringParser};
use crate::{Cx, Protocol, Reason, Transport};

/// A string could not be sent: it is longer than its length prefix can express (Twisted's
/// `StringTooLongError`).
///
/// ```
/// use torsion::protocols::basic::{Int8StringParser, StringFraming};
///
/// let err = Int8StringParser::encode(&[0; 256]).unwrap_err();
/// assert_eq!((err.length, err.max), (256, 255));
/// assert_eq!(
///     err.to_string(),
///     "cannot send 256 bytes with a 1-byte length prefix: the most it can carry is 255",
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot send {length} bytes with a {prefix_bytes}-byte length prefix: \
     the most it can carry is {max}"
)]
pub struct StringTooLong {
    /// The length of the string that was refused.
    pub length: usize,
    /// The longest string the prefix can carry.
    pub max: usize,
    /// The size of the length prefix in bytes.
    pub prefix_bytes: usize,
}

/// One thing a string framing found in its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringEvent<'a> {
    /// A complete string, framing removed.
    String(&'a [u8]),
    /// A length prefix above the maximum arrived (length-prefixed framings). The framing
    /// parses nothing more.
    LengthLimitExceeded(usize),
    /// The input is not a valid netstring. The framing parses nothing more.
    Malformed(NetstringError),
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A string framing without a transport: feed it bytes, take strings out. Implemented by
/// [`NetstringParser`] and the [`IntNStringParser`]s; it is what a [`StringReceiver`] is
/// generic over.
///
/// ```
/// use torsion::protocols::basic::{Int16StringParser, StringEvent, StringFraming};
///
/// let wire = Int16StringParser::encode(b"hello")?;
/// assert_eq!(wire, b"\x00\x05hello");
/// let mut p = Int16StringParser::default();
/// p.feed(&wire[..3]);
/// assert_eq!(p.next_event(), None);
/// p.feed(&wire[3..]);
/// assert_eq!(p.next_event(), Some(StringEvent::String(b"hello")));
/// # Ok::<(), torsion::protocols::basic::StringTooLong>(())
/// ```
pub trait StringFraming: sealed::Sealed + Default {
    /// The longest string accepted.
    fn max_length(&self) -> usize;

    /// Changes the longest string accepted.
    fn set_max_length(&mut self, max_length: usize);

    /// Appends bytes to the input. Ignored once the framing has failed.
    fn feed(&mut self, data: &[u8]);

    /// The next event from the buffered bytes followed by `chunk[*pos..]`, advancing `*pos`
    /// past what it used. Strings that lie wholly in `chunk` are returned as slices of it;
    /// only an incomplete one at its end is copied. Once this returns `None`,
    /// `*pos == chunk.len()`.
    fn next_event_in<'a>(&'a mut self, chunk: &'a [u8], pos: &mut usize)
    -> Option<StringEvent<'a>>;

    /// The next event from the buffered bytes, or `None` until more are fed.
    fn next_event(&mut self) -> Option<StringEvent<'_>> {
        self.next_event_in(&[], &mut 0)
    }

    /// Writes `string` framed, without copying it.
    fn write_string(transport: &mut dyn Transport, string: &[u8]) -> Result<(), StringTooLong>;

    /// `string` framed, as one buffer.
    fn encode(string: &[u8]) -> Result<Vec<u8>, StringTooLong>;
}

/// What a [`StringReceiver`] calls back (the methods a Twisted `NetstringReceiver` or
/// `Int32StringReceiver` subclass overrides).
pub trait StringHandler {
    /// The connection is up.
    fn connection_made(&mut self, cx: &mut StringCx<'_, '_>) {
        let _ = cx;
    }

    /// A complete string arrived, framing removed. The slice borrows the receiver's buffer or
    /// the read buffer: copy what must outlive the call.
    fn string_received(&mut self, cx: &mut StringCx<'_, '_>, string: &[u8]);

    /// A length prefix above the maximum arrived: `length` is its value. Called as soon as
    /// the prefix is complete, before any of the payload; nothing is parsed afterwards. The
    /// default closes the connection gracefully. Netstrings never call it: a netstring that
    /// is too long is malformed, and closes the connection.
    fn length_limit_exceeded(&mut self, cx: &mut StringCx<'_, '_>, length: usize) {
        let _ = length;
        cx.transport().lose_connection();
    }

    /// The connection is gone.
    fn connection_lost(&mut self, cx: &mut StringCx<'_, '_>, reason: Reason) {
        let _ = (cx, reason);
    }
}

#[derive(Debug, Default)]
struct Control {
    paused: bool,
    max_length: Option<usize>,
}

type WriteString = fn(&mut dyn Transport, &[u8]) -> Result<(), StringTooLong>;

/// The context of a [`StringHandler`] callback: the connection's [`Cx`] (through `Deref`)
/// plus [`StringCx::send_string`] and the receiver's controls.
pub struct StringCx<'a, 'b> {
    cx: &'a mut Cx<'b>,
    ctl: &'a mut Control,
    max_length: usize,
    write: WriteString,
}

impl<'b> Deref for StringCx<'_, 'b> {
    type Target = Cx<'b>;
    fn deref(&self) -> &Cx<'b> {
        self.cx
    }
}

impl<'b> DerefMut for StringCx<'_, 'b> {
    fn deref_mut(&mut self) -> &mut Cx<'b> {
        self.cx
    }
}

impl StringCx<'_, '_> {
    /// Sends `string` in this receiver's framing (Twisted's `sendString`). Fails, writing
    /// nothing, when a length prefix cannot express its length; netstrings never fail.
    ///
    /// ```
    /// use torsion::protocols::basic::{Int8StringReceiver, StringCx, StringHandler};
    /// use torsion::testing::StringTransport;
    /// use torsion::{Cx, Protocol, Reactor};
    ///
    /// struct Greeter;
    /// impl StringHandler for Greeter {
    ///     fn connection_made(&mut self, cx: &mut StringCx<'_, '_>) {
    ///         cx.send_string(b"hi").unwrap();
    ///         assert!(cx.send_string(&[b'x'; 256]).is_err());
    ///     }
    ///     fn string_received(&mut self, _: &mut StringCx<'_, '_>, _: &[u8]) {}
    /// }
    ///
    /// let reactor = Reactor::new()?;
    /// let mut t = StringTransport::new();
    /// Int8StringReceiver::new(Greeter).connection_made(&mut Cx::new(&mut t, &reactor));
    /// assert_eq!(t.value(), b"\x02hi");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_string(&mut self, string: &[u8]) -> Result<(), StringTooLong> {
        (self.write)(self.cx.transport(), string)
    }

    /// Stops delivering at once and pauses the transport; what arrives meanwhile is buffered.
    pub fn pause_producing(&mut self) {
        self.ctl.paused = true;
        self.cx.transport().pause_producing();
    }

    /// Undoes [`StringCx::pause_producing`]: delivery goes on with the rest of the chunk.
    pub fn resume_producing(&mut self) {
        self.ctl.paused = false;
        self.cx.transport().resume_producing();
    }

    /// Stops delivering and stops the transport for good.
    pub fn stop_producing(&mut self) {
        self.ctl.paused = true;
        self.cx.transport().stop_producing();
    }

    /// True while delivery is paused.
    pub fn is_paused(&self) -> bool {
        self.ctl.paused
    }

    /// The longest string accepted.
    pub fn max_length(&self) -> usize {
        self.ctl.max_length.unwrap_or(self.max_length)
    }

    /// Changes the longest string accepted, from the next string on.
    pub fn set_max_length(&mut self, max_length: usize) {
        self.ctl.max_length = Some(max_length);
    }
}

/// A [`Protocol`] that delivers the strings of framing `F` to a [`StringHandler`]: use it
/// through [`NetstringReceiver`], [`Int8StringReceiver`], [`Int16StringReceiver`] or
/// [`Int32StringReceiver`].
///
/// Delivery stops while paused, once the transport is closing, and for good once the peer
/// broke the framing (a malformed netstring closes the connection; a length prefix above the
/// maximum calls [`StringHandler::length_limit_exceeded`]).
///
/// ```
/// use torsion::protocols::basic::{NetstringReceiver, StringCx, StringHandler};
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Protocol, Reactor};
///
/// /// Sends every string back reversed.
/// struct Reverse;
/// impl StringHandler for Reverse {
///     fn string_received(&mut self, cx: &mut StringCx<'_, '_>, s: &[u8]) {
///         let r: Vec<u8> = s.iter().rev().copied().collect();
///         cx.send_string(&r).unwrap();
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// let mut p = NetstringReceiver::new(Reverse);
/// p.data_received(&mut Cx::new(&mut t, &reactor), b"3:abc,0:,2:x");
/// assert_eq!(t.value(), b"3:cba,0:,");
/// p.data_received(&mut Cx::new(&mut t, &reactor), b"y!");
/// assert!(t.disconnecting(), "no trailing comma");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct StringReceiver<H, F> {
    handler: H,
    framing: F,
    ctl: Control,
}

/// Twisted's `NetstringReceiver`: `<length>:<payload>,` strings; the maximum length is 99999.
pub type NetstringReceiver<H> = StringReceiver<H, NetstringParser>;
/// Twisted's `IntNStringReceiver`: strings after a big-endian unsigned length prefix of
/// `BYTES` bytes (1, 2 or 4); the maximum length is 99999.
pub type IntNStringReceiver<H, const BYTES: usize> = StringReceiver<H, IntNStringParser<BYTES>>;
/// Twisted's `Int8StringReceiver`: a 1-byte length prefix.
pub type Int8StringReceiver<H> = IntNStringReceiver<H, 1>;
/// Twisted's `Int16StringReceiver`: a 2-byte big-endian length prefix.
pub type Int16StringReceiver<H> = IntNStringReceiver<H, 2>;
/// Twisted's `Int32StringReceiver`: a 4-byte big-endian length prefix.
pub type Int32StringReceiver<H> = IntNStringReceiver<H, 4>;

impl<H: StringHandler, F: StringFraming> StringReceiver<H, F> {
    /// Wraps `handler`, with the framing's default maximum length.
    pub fn new(handler: H) -> Self {
        StringReceiver {
            handler,
            framing: F::default(),
            ctl: Control::default(),
        }
    }

    /// Sets the longest string accepted.
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.framing.set_max_length(max_length);
        self
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Unwraps the handler.
    pub fn into_handler(self) -> H {
        self.handler
    }

    /// The framing state.
    pub fn framing(&self) -> &F {
        &self.framing
    }

    /// True while delivery is paused.
    pub fn is_paused(&self) -> bool {
        self.ctl.paused
    }

    /// Stops delivering strings and pauses the transport.
    pub fn pause_producing(&mut self, cx: &mut Cx<'_>) {
        self.ctl.paused = true;
        cx.transport().pause_producing();
    }

    /// Resumes the transport and delivers what was buffered meanwhile.
    pub fn resume_producing(&mut self, cx: &mut Cx<'_>) {
        self.ctl.paused = false;
        cx.transport().resume_producing();
        self.process(cx, &[]);
    }

    /// Stops delivering strings and stops the transport for good.
    pub fn stop_producing(&mut self, cx: &mut Cx<'_>) {
        self.ctl.paused = true;
        cx.transport().stop_producing();
    }

    fn process(&mut self, cx: &mut Cx<'_>, chunk: &[u8]) {
        let mut pos = 0;
        loop {
            if self.ctl.paused || cx.transport().is_disconnecting() {
                self.framing.feed(&chunk[pos..]);
                return;
            }
            let max_length = self.framing.max_length();
            let Some(event) = self.framing.next_event_in(chunk, &mut pos) else {
                return;
            };
            let mut scx = StringCx {
                cx: &mut *cx,
                ctl: &mut self.ctl,
                max_length,
                write: F::write_string,
            };
            match event {
                StringEvent::String(s) => self.handler.string_received(&mut scx, s),
                StringEvent::LengthLimitExceeded(n) => {
                    self.handler.length_limit_exceeded(&mut scx, n)
                }
                StringEvent::Malformed(e) => {
                    tracing::debug!(error = %e, "closing the connection: malformed netstring");
                    scx.transport().lose_connection();
                }
            }
            if let Some(m) = self.ctl.max_length.take() {
                self.framing.set_max_length(m);
            }
        }
    }

    fn call(&mut self, cx: &mut Cx<'_>, f: impl FnOnce(&mut H, &mut StringCx<'_, '_>)) {
        let mut scx = StringCx {
            cx,
            ctl: &mut self.ctl,
            max_length: self.framing.max_length(),
            write: F::write_string,
        };
        f(&mut self.handler, &mut scx);
        if let Some(m) = self.ctl.max_length.take() {
            self.framing.set_max_length(m);
        }
    }
}

impl<H: StringHandler + 'static, F: StringFraming + 'static> Protocol for StringReceiver<H, F> {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        self.call(cx, |h, scx| h.connection_made(scx));
    }

    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        self.process(cx, data);
    }

    fn connection_lost(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        self.call(cx, |h, scx| h.connection_lost(scx, reason));
    }
}
