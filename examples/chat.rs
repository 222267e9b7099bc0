//! A chat room: each line a member sends goes to every other member.
//!
//! Examples follow the order of Twisted's own tutorial: reactor → protocol → factory →
//! client factory → `call_later` → `stop`. This is the factory step: the factory owns the state
//! the connections share (`Rc<RefCell<Room>>`), and a protocol reaches the other members through
//! the [`ConnectionHandle`]s kept in it.
//!
//! ```text
//! cargo run --example chat -- 8000
//! nc 127.0.0.1 8000    # in two or more terminals
//! ```

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use torsion::{Address, ConnectionHandle, Cx, Factory, Protocol, Reactor, Reason};

/// Longest line a member may send before being disconnected; keeps memory bounded.
const MAX_LINE: usize = 16 * 1024;

/// What the connections share: the members, by id and handle.
pub type Room = Vec<(u64, ConnectionHandle)>;

/// One member: its id, its name (the peer address) and the start of a line not yet ended.
#[derive(Default)]
pub struct Chatter {
    room: Rc<RefCell<Room>>,
    id: u64,
    name: String,
    line: Vec<u8>,
}

impl Protocol for Chatter {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        self.name = cx.transport().peer().to_string();
        self.room.borrow_mut().push((self.id, cx.handle()));
        let others = self.room.borrow().len() - 1;
        cx.write(format!("* welcome, {} with {others} other(s)\r\n", self.name).as_bytes());
    }

    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        self.line.extend_from_slice(data);
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            // Writing through a handle runs no protocol code, so the room may stay borrowed.
            for (_, member) in self.room.borrow().iter().filter(|(id, _)| *id != self.id) {
                member.write_vectored(&[self.name.as_bytes(), b": ", &self.line[..=end]]);
            }
            self.line.drain(..=end);
        }
        if self.line.len() > MAX_LINE {
            cx.transport().lose_connection();
        }
    }

    fn connection_lost(&mut self, _cx: &mut Cx<'_>, _reason: Reason) {
        self.room.borrow_mut().retain(|(id, _)| *id != self.id);
    }
}

/// Owns the [`Room`] and builds a [`Chatter`] in it per connection.
#[derive(Default)]
pub struct ChatFactory {
    /// The room every connection of this factory joins.
    pub room: Rc<RefCell<Room>>,
    next_id: Cell<u64>,
}

impl Factory for ChatFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        self.next_id.set(self.next_id.get() + 1);
        let (room, id) = (self.room.clone(), self.next_id.get());
        Some(Box::new(Chatter {
            room,
            id,
            ..Default::default()
        }))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).map_or(Ok(8000), |p| p.parse())?;
    let reactor = Reactor::new()?;
    let listening = reactor.listen_tcp(port, Rc::new(ChatFactory::default()))?;
    println!("chat room on {}; Ctrl-C stops it", listening.host());
    reactor.run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use torsion::testing::StringTransport;

    // Broadcast goes through real connection handles (tests/chat_loopback.rs covers it);
    // here, what a protocol does to its own transport and to the room.
    #[test]
    fn members_join_and_leave_the_room() {
        let reactor = Reactor::new().unwrap();
        let factory = ChatFactory::default();
        let (mut a, mut b) = (StringTransport::new(), StringTransport::new());
        let mut pa = factory.build_protocol(&Address::Unknown).unwrap();
        let mut pb = factory.build_protocol(&Address::Unknown).unwrap();
        pa.connection_made(&mut Cx::new(&mut a, &reactor));
        pb.connection_made(&mut Cx::new(&mut b, &reactor));
        assert_eq!(factory.room.borrow().len(), 2);
        assert!(a.value().ends_with(b"with 0 other(s)\r\n"));
        assert!(b.value().ends_with(b"with 1 other(s)\r\n"));
        let (a_len, b_len) = (a.value().len(), b.value().len());
        // A member's own lines are never written back to it.
        pa.data_received(&mut Cx::new(&mut a, &reactor), b"hel");
        pa.data_received(&mut Cx::new(&mut a, &reactor), b"lo\r\nagain\n");
        assert_eq!((a.value().len(), b.value().len()), (a_len, b_len));
        pa.connection_lost(&mut Cx::new(&mut a, &reactor), Reason::ConnectionDone);
        assert_eq!(factory.room.borrow().len(), 1);
        pb.connection_lost(&mut Cx::new(&mut b, &reactor), Reason::ConnectionDone);
        assert_eq!(factory.room.borrow().len(), 0);
    }

    #[test]
    fn an_endless_line_closes_the_connection() {
        let reactor = Reactor::new().unwrap();
        let factory = ChatFactory::default();
        let mut t = StringTransport::new();
        let mut p = factory.build_protocol(&Address::Unknown).unwrap();
        p.connection_made(&mut Cx::new(&mut t, &reactor));
        p.data_received(&mut Cx::new(&mut t, &reactor), &[b'x'; MAX_LINE]);
        assert!(!t.disconnecting());
        p.data_received(&mut Cx::new(&mut t, &reactor), b"x");
        assert!(t.disconnecting());
    }
}
