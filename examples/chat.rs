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

use std::cell::RefCell;
use std::rc::Rc;

use torsion::{Address, ConnectionHandle, Cx, Factory, Protocol, Reactor};

/// Longest line a member may send before being disconnected; keeps memory bounded.
const MAX_LINE: usize = 16 * 1024;

/// What the connections share: the members, by id and handle. Borrows of it stay inside one
/// callback; writing through a handle runs no protocol code, so it is safe while borrowed.
#[derive(Default)]
pub struct Room {
    members: Vec<(u64, ConnectionHandle)>,
    next_id: u64,
}

/// One member: its name (the peer address), its place in the room and a partial line.
pub struct Chatter {
    room: Rc<RefCell<Room>>,
    id: u64,
    name: String,
    line: Vec<u8>,
}

impl Protocol for Chatter {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        self.name = cx.transport().peer().to_string();
        let others = {
            let mut room = self.room.borrow_mut();
            self.id = room.next_id;
            room.next_id += 1;
            room.members.push((self.id, cx.handle()));
            room.members.len() - 1
        };
        cx.write(format!("* welcome, {} with {others} other(s)\r\n", self.name).as_bytes());
    }

    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        self.line.extend_from_slice(data);
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            let room = self.room.borrow();
            for (_, member) in room.members.iter().filter(|(id, _)| *id != self.id) {
                member.write_vectored(&[self.name.as_bytes(), b": ", &self.line[..=end]]);
            }
            drop(room);
            self.line.drain(..=end);
        }
        if self.line.len() > MAX_LINE {
            cx.transport().lose_connection();
        }
    }

    fn connection_lost(&mut self, _cx: &mut Cx<'_>, _reason: torsion::Reason) {
        self.room
            .borrow_mut()
            .members
            .retain(|(id, _)| *id != self.id);
    }
}

/// Builds a [`Chatter`] per connection, all sharing one [`Room`].
#[derive(Default)]
pub struct ChatFactory {
    /// The room every connection of this factory joins.
    pub room: Rc<RefCell<Room>>,
}

impl Factory for ChatFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        let (room, name, line) = (self.room.clone(), String::new(), Vec::new());
        Some(Box::new(Chatter {
            room,
            id: 0,
            name,
            line,
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
    use torsion::Reason;
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
        assert_eq!(factory.room.borrow().members.len(), 2);
        assert!(a.value().ends_with(b"with 0 other(s)\r\n"));
        assert!(b.value().ends_with(b"with 1 other(s)\r\n"));
        let (a_len, b_len) = (a.value().len(), b.value().len());
        // A member's own lines are never written back to it.
        pa.data_received(&mut Cx::new(&mut a, &reactor), b"hel");
        pa.data_received(&mut Cx::new(&mut a, &reactor), b"lo\r\nagain\n");
        assert_eq!((a.value().len(), b.value().len()), (a_len, b_len));
        pa.connection_lost(&mut Cx::new(&mut a, &reactor), Reason::ConnectionDone);
        assert_eq!(factory.room.borrow().members.len(), 1);
        pb.connection_lost(&mut Cx::new(&mut b, &reactor), Reason::ConnectionDone);
        assert_eq!(factory.room.borrow().members.len(), 0);
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
