//! An echo client: send a line, print the echo, close. If the server is not there, try again
//! after a delay, three times, then give up and stop the reactor.
//!
//! Examples follow the order of Twisted's own tutorial: reactor → protocol → factory →
//! client factory → `call_later` → `stop`. This one covers the last three: a `ClientFactory`
//! reconnects through its `Connector`, `call_later` spaces the attempts, and the reactor stops.
//!
//! ```text
//! cargo run --example echo_server -- 8000 &
//! cargo run --example echo_client -- 8000
//! ```

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use torsion::{Address, ClientFactory, ConnectError, Connector, Cx, Factory, Protocol};
use torsion::{Reactor, Reason};

const LINE: &[u8] = b"Hello, torsion!\r\n";
const RETRIES: u32 = 3;

/// One connection: writes [`LINE`], waits for the whole echo, prints it and closes.
#[derive(Default)]
pub struct EchoClient {
    echo: Vec<u8>,
}

impl Protocol for EchoClient {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        cx.write(LINE);
    }

    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        self.echo.extend_from_slice(data);
        if self.echo.len() >= LINE.len() {
            print!("echo: {}", String::from_utf8_lossy(&self.echo));
            cx.transport().lose_connection();
        }
    }
}

/// Retries a failed connection after `delay`, [`RETRIES`] times; stops the reactor at the end.
pub struct EchoClientFactory {
    delay: Duration,
    failures: Cell<u32>,
}

impl Factory for EchoClientFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(EchoClient::default()))
    }
}

impl ClientFactory for EchoClientFactory {
    fn client_connection_failed(&self, connector: &Connector, reason: ConnectError) {
        let Some(reactor) = connector.reactor() else {
            return;
        };
        self.failures.set(self.failures.get() + 1);
        println!("connection failed: {reason}");
        if self.failures.get() > RETRIES {
            println!("giving up");
            let _ = reactor.stop();
            return;
        }
        println!("trying again in {:?}", self.delay);
        let connector = connector.clone();
        reactor.call_later(self.delay, move |_| {
            let _ = connector.connect();
        });
    }

    fn client_connection_lost(&self, connector: &Connector, reason: Reason) {
        println!("done: {reason}");
        if let Some(reactor) = connector.reactor() {
            let _ = reactor.stop();
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).map_or(Ok(8000), |p| p.parse())?;
    let reactor = Reactor::new()?;
    let (delay, failures) = (Duration::from_secs(1), Cell::new(0));
    let factory = EchoClientFactory { delay, failures };
    reactor.connect_tcp("127.0.0.1", port, Rc::new(factory));
    reactor.run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use torsion::testing::StringTransport;

    #[test]
    fn sends_a_line_and_closes_after_the_whole_echo() {
        let reactor = Reactor::new().unwrap();
        let mut t = StringTransport::new();
        let mut p = EchoClient::default();
        p.connection_made(&mut Cx::new(&mut t, &reactor));
        assert_eq!(t.value(), LINE);
        p.data_received(&mut Cx::new(&mut t, &reactor), &LINE[..5]);
        assert!(!t.disconnecting());
        p.data_received(&mut Cx::new(&mut t, &reactor), &LINE[5..]);
        assert!(t.disconnecting());
    }

    #[test]
    fn retries_three_times_then_stops_the_reactor() {
        let reactor = Reactor::builder()
            .install_signal_handlers(false)
            .build()
            .unwrap();
        // A port nobody listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let factory = Rc::new(EchoClientFactory {
            delay: Duration::from_millis(10),
            failures: Cell::new(0),
        });
        reactor.connect_tcp("127.0.0.1", port, factory.clone());
        let timed_out = Rc::new(Cell::new(false));
        let flag = timed_out.clone();
        reactor.call_later(Duration::from_secs(10), move |r| {
            flag.set(true);
            r.stop().unwrap();
        });
        reactor.run().unwrap();
        assert!(
            !timed_out.get(),
            "the factory did not stop the reactor in time"
        );
        assert_eq!(factory.failures.get(), 1 + RETRIES);
    }
}
