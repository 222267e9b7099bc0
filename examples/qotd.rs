//! A quote-of-the-day server (RFC 865): write a quote as soon as a client connects, then close.
//!
//! Examples follow the order of Twisted's own tutorial: reactor → protocol → factory →
//! client factory → `call_later` → `stop`. This one is the protocol and factory step:
//! `connection_made` does the work and a factory hands each protocol its configuration.
//!
//! ```text
//! cargo run --example qotd -- 8000
//! nc 127.0.0.1 8000
//! ```

use std::rc::Rc;

use torsion::{Address, Cx, Factory, Protocol, Reactor};

/// One connection: the quote, then a graceful close (every byte is sent before the FIN).
pub struct Qotd {
    quote: Rc<str>,
}

impl Protocol for Qotd {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        cx.transport().write(self.quote.as_bytes());
        cx.transport().write(b"\r\n");
        cx.transport().lose_connection();
    }
}

/// Owns what every connection shares: here, the quote.
pub struct QotdFactory {
    quote: Rc<str>,
}

impl Factory for QotdFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Qotd {
            quote: self.quote.clone(),
        }))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).map_or(Ok(8000), |p| p.parse())?;
    let reactor = Reactor::new()?;
    let quote = "An apple a day keeps the doctor away".into();
    let listening = reactor.listen_tcp(port, Rc::new(QotdFactory { quote }))?;
    println!("quote of the day on {}; Ctrl-C stops it", listening.host());
    reactor.run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use torsion::testing::StringTransport;

    #[test]
    fn writes_the_quote_then_closes() {
        let reactor = Reactor::new().unwrap();
        let factory = QotdFactory { quote: "hi".into() };
        let mut proto = factory.build_protocol(&Address::Unknown).unwrap();
        let mut t = StringTransport::new();
        proto.connection_made(&mut Cx::new(&mut t, &reactor));
        assert_eq!(t.value(), b"hi\r\n");
        assert!(t.disconnecting());
        // Whatever the client sends afterwards is ignored.
        proto.data_received(&mut Cx::new(&mut t, &reactor), b"more?");
        assert_eq!(t.value(), b"hi\r\n");
    }
}
