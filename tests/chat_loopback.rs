//! The chat example over real loopback sockets: a line from one member reaches every other
//! member and never comes back to its sender.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use torsion::{Address, Reactor, TcpListenOptions};

#[allow(dead_code)]
#[path = "../examples/chat.rs"]
mod chat;

const TIMEOUT: Duration = Duration::from_secs(10);

struct Member {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    name: String,
}

impl Member {
    fn join(port: u16) -> Member {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        // The room names a member by its address as the server sees it.
        let name = Address::Tcp(stream.local_addr().unwrap()).to_string();
        Member {
            stream,
            reader,
            name,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("a line within the timeout");
        line
    }

    fn say(&mut self, line: &str) {
        self.stream.write_all(line.as_bytes()).unwrap();
    }
}

#[test]
fn a_line_reaches_every_other_member_and_not_its_sender() {
    let (tx, rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let reactor = Reactor::builder()
            .install_signal_handlers(false)
            .build()
            .unwrap();
        let opts = TcpListenOptions {
            interface: "127.0.0.1".into(),
            ..Default::default()
        };
        let factory = Rc::new(chat::ChatFactory::default());
        let port = reactor.listen_tcp_with(0, factory, opts).unwrap();
        // Stop on our own after a while, so a failing test cannot hang.
        reactor.call_later(Duration::from_secs(30), |r| {
            let _ = r.stop();
        });
        tx.send((port.host().port().unwrap(), reactor.handle()))
            .unwrap();
        reactor.run().unwrap();
    });
    let (port, handle) = rx.recv_timeout(TIMEOUT).unwrap();

    // Each welcome line proves the member joined before the next one connects.
    let mut members: Vec<Member> = (0..3).map(|_| Member::join(port)).collect();
    for (i, m) in members.iter_mut().enumerate() {
        let welcome = m.line();
        assert!(
            welcome.ends_with(&format!("with {i} other(s)\r\n")),
            "{welcome:?}"
        );
    }

    members[0].say("hello, room\n");
    let expected = format!("{}: hello, room\n", members[0].name);
    assert_eq!(members[1].line(), expected);
    assert_eq!(members[2].line(), expected);

    // If the first line had come back to its sender, it would arrive before this one.
    members[1].say("hi\r\n");
    let expected = format!("{}: hi\r\n", members[1].name);
    assert_eq!(members[0].line(), expected);
    assert_eq!(members[2].line(), expected);

    // A member leaving does not disturb the others.
    drop(members.pop());
    members[0].say("still here?\n");
    assert_eq!(
        members[1].line(),
        format!("{}: still here?\n", members[0].name)
    );

    handle.stop().unwrap();
    server.join().unwrap();
}
