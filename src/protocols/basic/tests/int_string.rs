//! Twisted's `Int8Tests`, `Int16Tests` and `Int32Tests`, and §2.4's boundaries.

use super::Harness;
use super::netstring::Recorder;
use crate::protocols::basic::{
    Int8StringParser, Int16StringParser, Int32StringParser, IntNStringParser, IntNStringReceiver,
    StringCx, StringFraming, StringHandler, StringTooLong,
};

fn prefix<const N: usize>(length: usize) -> Vec<u8> {
    (length as u64).to_be_bytes()[8 - N..].to_vec()
}

/// Twisted's `TestMixin` sets MAX_LENGTH to 50.
fn receiver<const N: usize>() -> Harness<IntNStringReceiver<Recorder, N>> {
    Harness::new(IntNStringReceiver::<_, N>::new(Recorder::default()).with_max_length(50))
}

fn test_receive<const N: usize>() {
    let mut h = receiver::<N>();
    let strings = [b"a".to_vec(), vec![b'b'; 16]];
    for s in &strings {
        h.feed_bytewise(&[prefix::<N>(s.len()), s.clone()].concat());
    }
    assert_eq!(h.p.handler().received, strings);
}

fn test_partial<const N: usize>(partials: &[&[u8]]) {
    for s in partials {
        let mut h = receiver::<N>();
        h.feed_bytewise(s);
        assert!(h.p.handler().received.is_empty());
    }
}

fn test_send<const N: usize>() {
    struct Send;
    impl StringHandler for Send {
        fn connection_made(&mut self, cx: &mut StringCx<'_, '_>) {
            cx.send_string(&[b'b'; 16]).unwrap();
        }
        fn string_received(&mut self, _: &mut StringCx<'_, '_>, _: &[u8]) {}
    }
    let h = Harness::new(IntNStringReceiver::<_, N>::new(Send));
    assert_eq!(h.t.value(), [prefix::<N>(16), vec![b'b'; 16]].concat());
}

fn test_length_limit_exceeded<const N: usize>() {
    let mut h =
        Harness::new(IntNStringReceiver::<_, N>::new(Recorder::default()).with_max_length(10));
    h.feed(&prefix::<N>(11));
    assert_eq!(h.p.handler().exceeded, [11]);
    assert!(h.t.disconnecting());
}

fn test_long_string_not_delivered<const N: usize>() {
    let mut h =
        Harness::new(IntNStringReceiver::<_, N>::new(Recorder::default()).with_max_length(10));
    h.feed(&[prefix::<N>(11), vec![b'x'; 11]].concat());
    assert!(h.p.handler().received.is_empty());
}

fn test_illegal<const N: usize>(illegal: &[u8]) {
    let mut h = receiver::<N>();
    h.feed_bytewise(illegal);
    assert!(h.t.disconnecting());
}

fn test_data<const N: usize>() {
    struct Foo;
    impl StringHandler for Foo {
        fn connection_made(&mut self, cx: &mut StringCx<'_, '_>) {
            cx.send_string(b"foo").unwrap();
        }
        fn string_received(&mut self, _: &mut StringCx<'_, '_>, _: &[u8]) {}
    }
    let h = Harness::new(IntNStringReceiver::<_, N>::new(Foo));
    assert_eq!(h.t.value(), [prefix::<N>(3), b"foo".to_vec()].concat());
    let mut h = receiver::<N>();
    h.feed(&[prefix::<N>(4), b"ubar".to_vec()].concat());
    assert_eq!(h.p.handler().received, [b"ubar"]);
}

fn boundaries<const N: usize>() {
    let mut h =
        Harness::new(IntNStringReceiver::<_, N>::new(Recorder::default()).with_max_length(200));
    h.feed(&[prefix::<N>(200), vec![b'm'; 200], prefix::<N>(0)].concat());
    assert_eq!(h.p.handler().received, [vec![b'm'; 200], vec![]]);
    h.feed(&prefix::<N>(201));
    assert_eq!(h.p.handler().exceeded, [201], "before any payload byte");
    h.feed(&[prefix::<N>(1), b"z".to_vec()].concat());
    assert_eq!(h.p.handler().received.len(), 2, "nothing more is parsed");
    assert!(h.p.framing().is_failed());
}

fn pause_and_resume<const N: usize>() {
    let mut h = receiver::<N>();
    h.feed(
        &[
            prefix::<N>(5),
            b"pause".to_vec(),
            prefix::<N>(1),
            b"a".to_vec(),
        ]
        .concat(),
    );
    assert_eq!(h.p.handler().received, [b"pause"]);
    h.with_cx(|p, cx| p.resume_producing(cx));
    assert_eq!(h.p.handler().received, [&b"pause"[..], b"a"]);
}

macro_rules! int_tests {
    ($name:ident, $n:literal, $illegal:expr, $partials:expr) => {
        mod $name {
            #[test]
            fn test_receive() {
                super::test_receive::<$n>();
            }
            #[test]
            fn test_partial() {
                super::test_partial::<$n>($partials);
            }
            #[test]
            fn test_send() {
                super::test_send::<$n>();
            }
            #[test]
            fn test_length_limit_exceeded() {
                super::test_length_limit_exceeded::<$n>();
            }
            #[test]
            fn test_long_string_not_delivered() {
                super::test_long_string_not_delivered::<$n>();
            }
            #[test]
            fn test_illegal() {
                super::test_illegal::<$n>($illegal);
            }
            #[test]
            fn test_data() {
                super::test_data::<$n>();
            }
            #[test]
            fn boundaries() {
                super::boundaries::<$n>();
            }
            #[test]
            fn pause_and_resume() {
                super::pause_and_resume::<$n>();
            }
        }
    };
}

int_tests!(
    int32,
    4,
    b"\x10\x00\x00\x00aaaaaa",
    &[b"\x00\x00\x00", b"hello there", b""]
);
int_tests!(int16, 2, b"\x10\x00aaaaaa", &[b"\x00", b"hello there", b""]);
int_tests!(int8, 1, b"\x00\x00aaaaaa", &[b"\x08", b"dzadz", b""]);

#[test]
fn test_too_long_send() {
    assert!(Int16StringParser::encode(&vec![b'b'; 65536 + 1]).is_err());
    assert!(Int8StringParser::encode(&[b'b'; 256 + 1]).is_err());
}

#[test]
fn send_string_limits() {
    assert!(Int8StringParser::encode(&[0; 255]).is_ok());
    assert_eq!(
        Int8StringParser::encode(&[0; 256]),
        Err(StringTooLong {
            length: 256,
            max: 255,
            prefix_bytes: 1
        })
    );
    assert!(Int16StringParser::encode(&vec![0; 65535]).is_ok());
    let err = Int16StringParser::encode(&vec![0; 65536]).unwrap_err();
    assert_eq!((err.max, err.prefix_bytes), (65535, 2));
    assert_eq!(Int32StringParser::PREFIX_MAX, u64::from(u32::MAX));
    assert_eq!(Int8StringParser::encode(b"").unwrap(), b"\x00");
}

#[test]
fn send_string_refuses_without_writing() {
    struct TooLong(Option<StringTooLong>);
    impl StringHandler for TooLong {
        fn connection_made(&mut self, cx: &mut StringCx<'_, '_>) {
            self.0 = cx.send_string(&[0; 256]).err();
        }
        fn string_received(&mut self, _: &mut StringCx<'_, '_>, _: &[u8]) {}
    }
    let h = Harness::new(IntNStringReceiver::<_, 1>::new(TooLong(None)));
    assert_eq!(h.t.value(), b"");
    assert_eq!(h.p.handler().0.map(|e| e.length), Some(256));
}

#[test]
fn set_max_length_from_a_callback_applies_to_the_next_string() {
    struct Shrink(Vec<usize>, Vec<usize>);
    impl StringHandler for Shrink {
        fn string_received(&mut self, cx: &mut StringCx<'_, '_>, s: &[u8]) {
            self.0.push(s.len());
            cx.set_max_length(2);
            assert_eq!(cx.max_length(), 2);
        }
        fn length_limit_exceeded(&mut self, _: &mut StringCx<'_, '_>, length: usize) {
            self.1.push(length);
        }
    }
    let mut h = Harness::new(IntNStringReceiver::<_, 1>::new(Shrink(
        Vec::new(),
        Vec::new(),
    )));
    h.feed(b"\x03abc\x03def");
    assert_eq!(
        (&h.p.handler().0[..], &h.p.handler().1[..]),
        (&[3][..], &[3][..])
    );
}

#[test]
fn the_parser_alone() {
    let mut p = IntNStringParser::<2>::default();
    assert_eq!(p.max_length(), 99999);
    let wire = Int16StringParser::encode(b"xyz").unwrap();
    let mut pos = 0;
    assert_eq!(p.next_event_in(&wire[..1], &mut pos), None);
    assert_eq!(pos, 1);
    let mut pos = 0;
    assert!(p.next_event_in(&wire[1..], &mut pos).is_some());
}
