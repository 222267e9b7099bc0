//! Twisted's `NetstringReceiverTests`, and §2.3's rules.

use super::Harness;
use crate::protocols::basic::{
    NetstringError, NetstringParser, NetstringReceiver, StringCx, StringEvent, StringFraming,
    StringHandler,
};

/// Twisted's `TestNetstring`: records and echoes every string. Its `TestMixin` sets
/// MAX_LENGTH to 50.
#[derive(Default)]
pub(super) struct Recorder {
    pub received: Vec<Vec<u8>>,
    pub exceeded: Vec<usize>,
    pub lost: bool,
}

impl StringHandler for Recorder {
    fn string_received(&mut self, cx: &mut StringCx<'_, '_>, s: &[u8]) {
        self.received.push(s.to_vec());
        cx.transport().write(s);
        match s {
            b"close" => cx.transport().lose_connection(),
            b"pause" => cx.pause_producing(),
            _ => {}
        }
    }

    fn length_limit_exceeded(&mut self, cx: &mut StringCx<'_, '_>, length: usize) {
        self.exceeded.push(length);
        cx.transport().lose_connection();
    }

    fn connection_lost(&mut self, _: &mut StringCx<'_, '_>, _: crate::Reason) {
        self.lost = true;
    }
}

fn netstring() -> Harness<NetstringReceiver<Recorder>> {
    Harness::new(NetstringReceiver::new(Recorder::default()).with_max_length(50))
}

fn received(h: &Harness<NetstringReceiver<Recorder>>) -> &[Vec<u8>] {
    &h.p.handler().received
}

#[test]
fn test_buffer() {
    let strings: Vec<Vec<u8>> = [
        &b"hello"[..],
        b"world",
        b"how",
        b"are",
        b"you123",
        b":today",
    ]
    .iter()
    .map(|s| s.to_vec())
    .chain([vec![b'a'; 515]])
    .collect();
    for size in 1..10 {
        let mut h = Harness::new(NetstringReceiver::new(Recorder::default()).with_max_length(699));
        let out: Vec<u8> = strings
            .iter()
            .flat_map(|s| NetstringParser::encode(s).unwrap())
            .collect();
        h.feed_in_chunks(&out, size);
        assert_eq!(h.p.handler().received, strings, "chunks of {size}");
    }
}

#[test]
fn test_illegal() {
    let mut long = b"51:".to_vec();
    long.extend([b'a'; 50]);
    long.extend(b"b,");
    for s in [&b"9999999999999999999999"[..], b"abc", b"4:abcde", &long] {
        let mut h = netstring();
        h.feed_bytewise(s);
        assert!(h.t.disconnecting(), "{:?}", String::from_utf8_lossy(s));
    }
}

#[test]
fn well_formed_netstrings_are_received() {
    for (wire, expected) in [
        (&b"0:,"[..], &b""[..]),
        (b"1:a,", b"a"),
        (b"2:ab,", b"ab"),
        (b"4:1:a,,", b"1:a,"),
    ] {
        let mut h = netstring();
        h.feed(wire);
        assert_eq!(received(&h), [expected]);
        assert!(!h.t.disconnecting());
    }
}

#[test]
fn malformed_netstrings_close_the_connection() {
    for wire in [
        &b"2:aaa,"[..],
        b"0:a,",
        b":aaa,",
        b"3aaa,",
        b"aaa,",
        b"aaa",
        b"01:a,",
        b"-1:a,",
        b" 1:a,",
        b"999999",
        b"1000000",
    ] {
        let mut h = Harness::new(NetstringReceiver::new(Recorder::default()));
        h.feed(wire);
        assert!(h.t.disconnecting(), "{:?}", String::from_utf8_lossy(wire));
        assert!(h.p.framing().is_broken());
        assert!(received(&h).is_empty());
    }
}

#[test]
fn errors_are_found_on_a_partial_length() {
    let mut h = Harness::new(NetstringReceiver::new(Recorder::default()));
    h.feed(b"99999");
    assert!(!h.t.disconnecting(), "99999 is the maximum itself");
    h.feed(b"9");
    assert!(h.t.disconnecting());
    assert_eq!(
        h.p.framing().error(),
        Some(NetstringError::TooLong { max: 99999 })
    );

    let mut h = Harness::new(NetstringReceiver::new(Recorder::default()).with_max_length(11));
    h.feed(b"123");
    assert!(h.t.disconnecting());

    let mut h = netstring();
    h.feed(b"0");
    assert!(!h.t.disconnecting());
    h.feed(b"1");
    assert_eq!(h.p.framing().error(), Some(NetstringError::MissingLength));

    let mut h = netstring();
    h.feed(b"a");
    assert!(h.t.disconnecting(), "one byte is enough");
}

#[test]
fn a_broken_peer_is_never_parsed_again() {
    let mut h = netstring();
    h.feed(b"1:a,2:bcd,1:e,");
    assert_eq!(received(&h), [b"a"]);
    assert_eq!(h.p.framing().error(), Some(NetstringError::MissingComma));
    h.feed(b"1:f,");
    assert_eq!(received(&h), [b"a"]);
}

#[test]
fn test_receive_netstring_portions() {
    for parts in [
        &[&b"4:aa"[..], b"aa,"][..],
        &[b"1", b"0:01234", b"56789", b","],
        &[b"2", b":", b"a", b"b", b","],
    ] {
        let mut h = netstring();
        for p in parts {
            h.feed(p);
        }
        let expected: Vec<u8> = parts.concat();
        let payload = &expected[expected.iter().position(|&b| b == b':').unwrap() + 1..];
        assert_eq!(received(&h), [&payload[..payload.len() - 1]]);
    }
}

#[test]
fn test_receive_two_netstrings() {
    let mut h = netstring();
    h.feed(b"1:a,1");
    assert_eq!(received(&h), [b"a"]);
    h.feed(b":b,");
    assert_eq!(received(&h), [b"a", b"b"]);
}

#[test]
fn test_max_receive_limit() {
    let mut h = netstring();
    let mut wire = b"51:".to_vec();
    wire.extend([b'a'; 51]);
    h.feed(&wire);
    assert!(h.t.disconnecting());
}

/// Twisted's `_consumeLength` border cases, through the parser.
#[test]
fn length_border_cases() {
    let parse = |wire: &[u8], max: usize| {
        let mut p = NetstringParser::default();
        p.set_max_length(max);
        p.feed(wire);
        p.next_event()
            .map(|e| matches!(e, StringEvent::Malformed(_)))
    };
    assert_eq!(parse(b"12:", 99999), None);
    assert_eq!(parse(b"12:", 12), None);
    assert_eq!(parse(b"12:", 11), Some(true));
    assert_eq!(parse(b"1000:", 11), Some(true));
}

#[test]
fn send_string_writes_a_netstring() {
    struct Send;
    impl StringHandler for Send {
        fn connection_made(&mut self, cx: &mut StringCx<'_, '_>) {
            cx.send_string(b"hello").unwrap();
            cx.send_string(b"").unwrap();
            cx.send_string(&[b'x'; 12]).unwrap();
        }
        fn string_received(&mut self, _: &mut StringCx<'_, '_>, _: &[u8]) {}
    }
    let h = Harness::new(NetstringReceiver::new(Send));
    assert_eq!(h.t.value(), b"5:hello,0:,12:xxxxxxxxxxxx,");
}

#[test]
fn no_strings_once_closing() {
    let mut h = netstring();
    h.feed(b"1:a,5:close,1:b,");
    assert_eq!(received(&h), [&b"a"[..], b"close"]);
}

#[test]
fn pause_and_resume() {
    let mut h = netstring();
    h.feed(b"5:pause,1:a,1:");
    assert_eq!(received(&h), [b"pause"]);
    h.feed(b"b,");
    h.with_cx(|p, cx| p.resume_producing(cx));
    assert_eq!(received(&h), [&b"pause"[..], b"a", b"b"]);
}

#[test]
fn connection_lost_is_passed_on() {
    let mut h = netstring();
    h.lose(crate::Reason::ConnectionDone);
    assert!(h.p.handler().lost);
}
