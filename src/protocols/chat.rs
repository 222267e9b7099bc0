//! A chat server on [`LineReceiver`], speaking exactly as the chat server of Twisted's
//! "Writing Servers" guide, plus a line limit and an idle timeout.
//!
//! ```text
//! S: What's your name?
//! C: alice
//! S: Welcome, alice!
//! C: hello                  (every other member gets "<alice> hello")
//! C: /quit                  (the server closes the connection)
//! ```
//!
//! A name already in use gets `Name taken, please choose another.` and the server asks
//! nothing more: the next line is the next try. Lines end in `\r\n`. A line longer than the
//! maximum closes that client's connection (and only that one); so does a client that sends
//! no complete line for the idle timeout. A name is free again once its connection is lost.
//!
//! Differences from the guide's code: `/quit` (at any time), the line limit and the idle
//! timeout are additions; names and lines are bytes, compared and relayed as they are.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use crate::protocols::basic::{LineCx, LineHandler, LineReceiver};
use crate::protocols::policies::IdleTimeout;
use crate::protocols::policies::reach::{ReachFn, reach_of};
use crate::task::Clock;
use crate::{Address, ConnectionHandle, Factory, Protocol, Reactor, Reason};

/// The longest line by default (LineReceiver's `MAX_LENGTH`).
pub const DEFAULT_MAX_LINE: usize = 16384;

/// The members who chose a name, by name.
type Users = Rc<RefCell<HashMap<Vec<u8>, ConnectionHandle>>>;

/// Builds a [`Chat`] protocol per connection; owns the room they share.
///
/// Timers run on `clock`: pass the reactor that listens (or a
/// [`testing::Clock`](crate::testing::Clock) in tests).
///
/// ```no_run
/// use std::rc::Rc;
/// use std::time::Duration;
/// use torsion::protocols::chat::ChatFactory;
/// use torsion::Reactor;
///
/// let reactor = Reactor::new()?;
/// let factory = ChatFactory::new(reactor.clone())
///     .with_idle_timeout(Some(Duration::from_secs(600)))
///     .with_max_line(4096);
/// reactor.listen_tcp(8123, Rc::new(factory))?;
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ChatFactory<C: Clock + Clone + 'static = Reactor> {
    users: Users,
    clock: C,
    idle_timeout: Option<Duration>,
    max_line: usize,
    reach: Option<ReachFn>,
}

impl<C: Clock + Clone + 'static> ChatFactory<C> {
    /// A room with no idle timeout and the default line limit.
    pub fn new(clock: C) -> Self {
        ChatFactory {
            users: Rc::default(),
            clock,
            idle_timeout: None,
            max_line: DEFAULT_MAX_LINE,
            reach: None,
        }
    }

    /// Closes a connection that completes no line for `timeout` (`None`: never).
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Closes a connection that sends a line longer than `bytes`.
    pub fn with_max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes;
        self
    }

    /// The names in use, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .users
            .borrow()
            .keys()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        names.sort();
        names
    }

    /// A new member's protocol.
    pub fn build(&self) -> LineReceiver<Chat<C>> {
        LineReceiver::new(Chat {
            users: self.users.clone(),
            name: None,
            clock: self.clock.clone(),
            idle_timeout: self.idle_timeout,
            idle: None,
            reach: self.reach.clone(),
        })
        .with_max_length(self.max_line)
    }

    #[cfg(test)]
    pub(crate) fn reach_with(mut self, f: ReachFn) -> Self {
        self.reach = Some(f);
        self
    }
}

impl<C: Clock + Clone + 'static> Factory for ChatFactory<C> {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(self.build()))
    }
}

/// One member of the chat (the [`LineHandler`] a [`ChatFactory`] wraps in a
/// [`LineReceiver`]).
pub struct Chat<C: Clock + Clone + 'static = Reactor> {
    users: Users,
    /// Set once a name is accepted (Twisted's state `CHAT`; `None` is `GETNAME`).
    name: Option<Vec<u8>>,
    clock: C,
    idle_timeout: Option<Duration>,
    idle: Option<IdleTimeout<C>>,
    reach: Option<ReachFn>,
}

impl<C: Clock + Clone + 'static> Chat<C> {
    /// The accepted name, once there is one.
    pub fn name(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }

    /// The idle timer, while the connection is up and a timeout is set.
    pub fn idle(&self) -> Option<&IdleTimeout<C>> {
        self.idle.as_ref()
    }

    fn handle_name(&mut self, cx: &mut LineCx<'_, '_>, name: &[u8]) {
        if self.users.borrow().contains_key(name) {
            cx.send_line(b"Name taken, please choose another.");
            return;
        }
        cx.transport()
            .write_vectored(&[b"Welcome, ", name, b"!\r\n"]);
        self.users.borrow_mut().insert(name.to_vec(), cx.handle());
        self.name = Some(name.to_vec());
    }

    fn handle_chat(&self, line: &[u8]) {
        let name = self.name.as_deref().unwrap_or_default();
        // Writing through a handle runs no protocol code, so the room may stay borrowed.
        for (_, other) in self.users.borrow().iter().filter(|(n, _)| *n != name) {
            other.write_vectored(&[b"<", name, b"> ", line, b"\r\n"]);
        }
    }
}

impl<C: Clock + Clone + 'static> LineHandler for Chat<C>
where
    C::Call: 'static,
{
    fn connection_made(&mut self, cx: &mut LineCx<'_, '_>) {
        if let Some(period) = self.idle_timeout {
            let conn = reach_of(self.reach.as_ref(), cx);
            let mut idle = IdleTimeout::new(self.clock.clone(), move || {
                conn.reach(Box::new(|cx| cx.transport().lose_connection()));
            });
            idle.set_timeout(Some(period));
            self.idle = Some(idle);
        }
        cx.send_line(b"What's your name?");
    }

    fn line_received(&mut self, cx: &mut LineCx<'_, '_>, line: &[u8]) {
        if let Some(idle) = &mut self.idle {
            idle.reset_timeout();
        }
        if line == b"/quit" {
            cx.transport().lose_connection();
        } else if self.name.is_none() {
            self.handle_name(cx, line);
        } else {
            self.handle_chat(line);
        }
    }

    fn connection_lost(&mut self, _cx: &mut LineCx<'_, '_>, _reason: Reason) {
        self.idle = None;
        if let Some(name) = self.name.take() {
            self.users.borrow_mut().remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    //! What a member sees of its own connection, on a `StringTransport`; broadcasts go through
    //! real connection handles and are tested over loopback in `tests/chat_server.rs`.

    use super::*;
    use crate::protocols::policies::reach::testing::Conn;
    use crate::testing;

    fn member(factory: &ChatFactory<testing::Clock>) -> Conn {
        let (t, reactor, _) = Conn::transport();
        Conn::connect(reactor, t, Box::new(factory.build()))
    }

    fn said(c: &Conn) -> Vec<u8> {
        c.t.borrow_mut().take()
    }

    #[test]
    fn asks_the_name_then_welcomes() {
        let factory = ChatFactory::new(testing::Clock::new());
        let mut alice = member(&factory);
        assert_eq!(said(&alice), b"What's your name?\r\n");
        alice.feed(b"alice\r\n");
        assert_eq!(said(&alice), b"Welcome, alice!\r\n");
        assert_eq!(factory.names(), ["alice"]);
        // A chat line is not echoed back to its sender.
        alice.feed(b"hello, room\r\n");
        assert!(said(&alice).is_empty());
    }

    #[test]
    fn a_taken_name_is_refused_until_a_free_one_comes() {
        let factory = ChatFactory::new(testing::Clock::new());
        let mut a = member(&factory);
        a.feed(b"sam\r\n");
        let mut b = member(&factory);
        said(&b);
        b.feed(b"sam\r\n");
        assert_eq!(said(&b), b"Name taken, please choose another.\r\n");
        b.feed(b"max\r\n");
        assert_eq!(said(&b), b"Welcome, max!\r\n");
        assert_eq!(factory.names(), ["max", "sam"]);
        // A name is free again once its connection is lost.
        a.lose();
        assert_eq!(factory.names(), ["max"]);
        let mut c = member(&factory);
        said(&c);
        c.feed(b"sam\r\n");
        assert_eq!(said(&c), b"Welcome, sam!\r\n");
    }

    #[test]
    fn quit_closes_in_either_state() {
        let factory = ChatFactory::new(testing::Clock::new());
        let mut a = member(&factory);
        a.feed(b"/quit\r\n");
        assert!(a.t.borrow().disconnecting());
        let mut b = member(&factory);
        b.feed(b"bo\r\n/quit\r\nnot delivered\r\n");
        assert!(b.t.borrow().disconnecting());
        b.lose();
        assert!(factory.names().is_empty());
    }

    #[test]
    fn an_over_long_line_closes_the_connection() {
        let factory = ChatFactory::new(testing::Clock::new()).with_max_line(8);
        let mut a = member(&factory);
        a.feed(b"12345678\r\n");
        assert!(
            !a.t.borrow().disconnecting(),
            "exactly the limit is accepted"
        );
        a.feed(b"123456789\r\n");
        assert!(a.t.borrow().disconnecting());
    }

    #[test]
    fn an_idle_member_is_closed() {
        let clock = testing::Clock::new();
        let (t, reactor, reach) = Conn::transport();
        let factory = ChatFactory::new(clock.clone())
            .with_idle_timeout(Some(Duration::from_secs(60)))
            .reach_with(reach);
        let mut a = Conn::connect(reactor, t, Box::new(factory.build()));
        clock.advance(Duration::from_secs(59));
        a.feed(b"ann\r\n");
        clock.advance(Duration::from_secs(59));
        a.feed(b"partial line, not activity");
        clock.advance(Duration::from_secs(1));
        assert!(a.t.borrow().disconnecting());
        a.lose();
        assert!(clock.calls().is_empty() && factory.names().is_empty());
    }
}
