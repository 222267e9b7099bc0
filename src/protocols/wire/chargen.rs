//! [`Chargen`] (RFC 864): an endless stream of printable characters, written only as fast
//! as the peer reads.

use std::rc::Rc;
use std::sync::OnceLock;

use crate::factory::from_fn;
use crate::{Cx, Factory, Producer, Protocol};

/// Characters per line, before the `\r\n` (RFC 864).
pub const LINE: usize = 72;

/// Bytes in one full cycle: 95 lines (one per starting character) of 74 bytes.
pub const CYCLE: usize = 95 * (LINE + 2);

/// The 95 lines of RFC 864's rotating pattern: line `i` is the 72 printable characters that
/// start at the `i`-th one (space is the first), wrapping around.
fn cycle() -> &'static [u8] {
    static CYCLE_BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    CYCLE_BYTES.get_or_init(|| {
        let printable: Vec<u8> = (b' '..=b'~').collect();
        let mut out = Vec::with_capacity(CYCLE);
        for start in 0..printable.len() {
            out.extend((0..LINE).map(|k| printable[(start + k) % printable.len()]));
            out.extend_from_slice(b"\r\n");
        }
        out
    })
}

/// RFC 864: sends lines of printable characters until the peer closes, and drops what it
/// receives. The lines come from a pull [`ChargenProducer`] registered on the transport, so
/// they are written only as fast as the peer reads.
///
/// ```
/// use torsion::protocols::wire::{Chargen, CYCLE};
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Protocol, Reactor};
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// Chargen.connection_made(&mut Cx::new(&mut t, &reactor));
/// assert!(t.producer_mut().is_some() && !t.streaming()); // a pull producer
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Chargen;

impl Chargen {
    /// A factory of [`Chargen`] protocols.
    pub fn factory() -> Rc<dyn Factory> {
        Rc::new(from_fn(|_| Some(Box::new(Chargen) as Box<dyn Protocol>)))
    }
}

impl Protocol for Chargen {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        if cx
            .transport()
            .register_producer(Box::new(ChargenProducer), false)
            .is_err()
        {
            cx.transport().lose_connection();
        }
    }
}

/// The pull producer behind [`Chargen`]: one [`CYCLE`] of lines per turn, starting where the
/// last turn stopped (every turn writes whole cycles, so each turn starts at line 0).
///
/// ```
/// use torsion::protocols::wire::{ChargenProducer, CYCLE, LINE};
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Producer, Reactor};
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// ChargenProducer.resume_producing(&mut Cx::new(&mut t, &reactor));
/// let out = t.value();
/// assert_eq!(out.len(), CYCLE);
/// assert_eq!(&out[..LINE + 2], &b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n"[..]);
/// assert!(out[LINE + 2..].starts_with(b"!\"#"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ChargenProducer;

impl Producer for ChargenProducer {
    fn resume_producing(&mut self, cx: &mut Cx<'_>) {
        cx.transport().write(cycle());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_the_rotating_pattern() {
        let c = cycle();
        assert_eq!(c.len(), CYCLE);
        let lines: Vec<&[u8]> = c.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 95);
        for (i, line) in lines.iter().enumerate() {
            let (text, cr) = line.split_at(LINE);
            assert_eq!(cr, b"\r");
            for (k, &ch) in text.iter().enumerate() {
                assert_eq!(ch, b' ' + ((i + k) % 95) as u8, "line {i} column {k}");
            }
        }
    }
}
