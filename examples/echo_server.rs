//! An echo server (RFC 862): send back whatever arrives.
//!
//! Examples follow the order of Twisted's own tutorial: reactor → protocol → factory →
//! client factory → `call_later` → `stop`. This is the first: a reactor, a protocol and a
//! factory built from a closure.
//!
//! ```text
//! cargo run --example echo_server -- 8000
//! nc 127.0.0.1 8000
//! ```

use std::rc::Rc;

use torsion::factory::from_fn;
use torsion::{Cx, Protocol, Reactor};

/// One connection: every byte received is written back.
pub struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, cx: &mut Cx<'_>, data: &[u8]) {
        cx.transport().write(data);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).map_or(Ok(8000), |p| p.parse())?;
    let reactor = Reactor::new()?;
    let factory = from_fn(|_addr| Some(Box::new(Echo) as Box<dyn Protocol>));
    let listening = reactor.listen_tcp(port, Rc::new(factory))?;
    println!("echo server on {}; Ctrl-C stops it", listening.host());
    reactor.run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use torsion::testing::StringTransport;

    #[test]
    fn echoes_every_chunk() {
        let reactor = Reactor::new().unwrap();
        let mut t = StringTransport::new();
        let mut echo = Echo;
        echo.connection_made(&mut Cx::new(&mut t, &reactor));
        assert!(t.value().is_empty());
        echo.data_received(&mut Cx::new(&mut t, &reactor), b"hello ");
        echo.data_received(&mut Cx::new(&mut t, &reactor), b"world\r\n");
        assert_eq!(t.value(), b"hello world\r\n");
        assert!(!t.disconnecting());
    }
}
