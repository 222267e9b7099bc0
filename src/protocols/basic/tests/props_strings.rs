//! Property tests of the string framings: round trips, chunking independence, and a
//! reference netstring parser written from the format's definition.

use proptest::prelude::*;

use super::{Harness, chunks};
use crate::protocols::basic::{
    Int8StringParser, Int16StringParser, Int32StringParser, NetstringParser, NetstringReceiver,
    StringCx, StringEvent, StringFraming, StringHandler,
};

/// Every event of `framing` for `data` cut at `sizes`, parsed without copying.
fn events_in<F: StringFraming>(max: usize, data: &[u8], sizes: &[usize]) -> Vec<String> {
    let mut f = F::default();
    f.set_max_length(max);
    let mut out = Vec::new();
    for c in chunks(data, sizes) {
        let mut pos = 0;
        while let Some(ev) = f.next_event_in(c, &mut pos) {
            out.push(format!("{ev:?}"));
        }
        assert_eq!(pos, c.len());
    }
    out
}

/// The same through `feed` and `next_event`.
fn events_fed<F: StringFraming>(max: usize, data: &[u8], sizes: &[usize]) -> Vec<String> {
    let mut f = F::default();
    f.set_max_length(max);
    let mut out = Vec::new();
    for c in chunks(data, sizes) {
        f.feed(c);
        while let Some(ev) = f.next_event() {
            out.push(format!("{ev:?}"));
        }
    }
    out
}

/// Netstrings by their definition: `(0|[1-9][0-9]*):<that many bytes>,`, read from a whole
/// stream. Returns the strings and whether the stream breaks the format (as opposed to ending
/// early). A prefix is broken as soon as it cannot begin a valid length.
fn reference_netstrings(data: &[u8], max: usize) -> (Vec<Vec<u8>>, bool) {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let digits = data[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        let spec = &data[i..i + digits];
        if spec.len() > 1 && spec[0] == b'0' {
            return (out, true);
        }
        // Any prefix of the digits above the maximum is already too long.
        let mut value: u128 = 0;
        for &d in spec {
            value = value * 10 + u128::from(d - b'0');
            if value > max as u128 {
                return (out, true);
            }
        }
        let after = i + digits;
        if after == data.len() {
            return (out, false);
        }
        if data[after] != b':' || digits == 0 {
            return (out, true);
        }
        let start = after + 1;
        let end = start + value as usize;
        if end >= data.len() {
            return (out, false);
        }
        if data[end] != b',' {
            return (out, true);
        }
        out.push(data[start..end].to_vec());
        i = end + 1;
        if i == data.len() {
            return (out, false);
        }
    }
}

fn netstring_stream() -> impl Strategy<Value = Vec<u8>> {
    // Mostly valid netstrings, with corruption now and then.
    let piece = prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..20)
            .prop_map(|p| NetstringParser::encode(&p).unwrap()),
        1 => prop::collection::vec(prop::sample::select(b"0123456789:,a".to_vec()), 1..6),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..24, 1..8)
}

#[derive(Default)]
struct Collect(Vec<Vec<u8>>);

impl StringHandler for Collect {
    fn string_received(&mut self, _: &mut StringCx<'_, '_>, s: &[u8]) {
        self.0.push(s.to_vec());
    }
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn netstrings_match_the_definition(data in netstring_stream(), sizes in sizes(), max in 0usize..40) {
        let (strings, broken) = reference_netstrings(&data, max);
        let mut h = Harness::new(NetstringReceiver::new(Collect::default()).with_max_length(max));
        for c in chunks(&data, &sizes) {
            h.feed(c);
        }
        prop_assert_eq!(&h.p.handler().0, &strings);
        prop_assert_eq!(h.t.disconnecting(), broken);
        prop_assert_eq!(h.p.framing().is_broken(), broken);
    }

    #[test]
    fn netstring_round_trip(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..10), sizes in sizes()) {
        let wire: Vec<u8> = payloads.iter().flat_map(|p| NetstringParser::encode(p).unwrap()).collect();
        let mut h = Harness::new(NetstringReceiver::new(Collect::default()));
        for c in chunks(&wire, &sizes) {
            h.feed(c);
        }
        prop_assert_eq!(&h.p.handler().0, &payloads);
    }

    #[test]
    fn int_prefixed_round_trip(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..10), sizes in sizes()) {
        fn check<F: StringFraming>(payloads: &[Vec<u8>], sizes: &[usize]) -> Result<(), TestCaseError> {
            let wire: Vec<u8> = payloads.iter().flat_map(|p| F::encode(p).unwrap()).collect();
            let expected: Vec<String> = payloads.iter().map(|p| format!("{:?}", StringEvent::String(p))).collect();
            prop_assert_eq!(events_in::<F>(99999, &wire, sizes), expected.clone());
            prop_assert_eq!(events_fed::<F>(99999, &wire, sizes), expected);
            Ok(())
        }
        let short: Vec<Vec<u8>> = payloads.iter().map(|p| p[..p.len().min(255)].to_vec()).collect();
        check::<Int8StringParser>(&short, &sizes)?;
        check::<Int16StringParser>(&payloads, &sizes)?;
        check::<Int32StringParser>(&payloads, &sizes)?;
    }

    /// Any bytes, any chunking: the same events as the whole stream at once, by either way
    /// of feeding, and never a panic.
    #[test]
    fn any_split_gives_the_same_strings(data in prop::collection::vec(any::<u8>(), 0..300), sizes in sizes(), max in 0usize..300) {
        fn check<F: StringFraming>(max: usize, data: &[u8], sizes: &[usize]) -> Result<(), TestCaseError> {
            let whole = events_in::<F>(max, data, &[data.len().max(1)]);
            prop_assert_eq!(&events_in::<F>(max, data, sizes), &whole);
            prop_assert_eq!(&events_fed::<F>(max, data, sizes), &whole);
            Ok(())
        }
        check::<NetstringParser>(max, &data, &sizes)?;
        check::<Int8StringParser>(max, &data, &sizes)?;
        check::<Int16StringParser>(max, &data, &sizes)?;
        check::<Int32StringParser>(max, &data, &sizes)?;
    }

    #[test]
    fn netstrings_split_the_same_way_whatever_the_chunking(data in netstring_stream(), sizes in sizes(), max in 0usize..40) {
        let whole = events_in::<NetstringParser>(max, &data, &[data.len().max(1)]);
        prop_assert_eq!(&events_in::<NetstringParser>(max, &data, &sizes), &whole);
        prop_assert_eq!(&events_fed::<NetstringParser>(max, &data, &sizes), &whole);
    }
}
