//! Tests of the receivers, most ported from Twisted's `protocols/test/test_basic.py`; the
//! property tests compare each receiver with a direct model of Twisted's algorithm.

mod int_string;
mod line_only;
mod line_receiver;
mod line_receiver_more;
mod netstring;
mod props_lines;
mod props_strings;

use crate::testing::StringTransport;
use crate::{Cx, Protocol, Reactor, Reason};

/// A protocol on a [`StringTransport`], connected.
pub(super) struct Harness<P> {
    pub reactor: Reactor,
    pub t: StringTransport,
    pub p: P,
}

impl<P: Protocol> Harness<P> {
    pub fn new(mut p: P) -> Self {
        let reactor = Reactor::new().expect("reactor");
        let mut t = StringTransport::new();
        p.connection_made(&mut Cx::new(&mut t, &reactor));
        Harness { reactor, t, p }
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.p
            .data_received(&mut Cx::new(&mut self.t, &self.reactor), data);
    }

    /// Feeds `data` the way Twisted's tests do: `len / size + 1` chunks of `size` bytes, the
    /// last one possibly empty.
    pub fn feed_in_chunks(&mut self, data: &[u8], size: usize) {
        for i in 0..data.len() / size + 1 {
            let end = ((i + 1) * size).min(data.len());
            self.feed(&data[(i * size).min(data.len())..end]);
        }
    }

    pub fn feed_bytewise(&mut self, data: &[u8]) {
        for b in data {
            self.feed(std::slice::from_ref(b));
        }
    }

    pub fn lose(&mut self, reason: Reason) {
        self.p
            .connection_lost(&mut Cx::new(&mut self.t, &self.reactor), reason);
    }

    /// Runs `f` with a context on this harness's transport.
    pub fn with_cx<R>(&mut self, f: impl FnOnce(&mut P, &mut Cx<'_>) -> R) -> R {
        f(&mut self.p, &mut Cx::new(&mut self.t, &self.reactor))
    }
}

/// `data` cut at the given sizes (cycled); sizes of 0 count as 1.
pub(super) fn chunks<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        let end = (pos + n).min(data.len());
        out.push(&data[pos..end]);
        pos = end;
        i += 1;
    }
    out
}

/// 1000 cases per property unless `PROPTEST_CASES` asks for another number.
pub(super) fn config() -> proptest::prelude::ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    proptest::prelude::ProptestConfig::with_cases(cases)
}
