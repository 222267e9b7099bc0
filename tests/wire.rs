//! `protocols::wire` over loopback, each service against its RFC's format; chargen's memory
//! stays bounded for a reader that does not read; and the same services from
//! `torsion serve SERVICE`.

mod common;

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use torsion::producer::DEFAULT_HIGH_WATER;
use torsion::protocols::policies::WrappingFactory;
use torsion::protocols::wire::{
    CYCLE, Chargen, Daytime, Discard, Echo, LINE, Qotd, Time, daytime_line,
};

/// Checks a chargen stream: lines of 72 printable characters and CRLF, each starting one
/// character after the one before. `text` may end mid-line.
fn check_chargen(text: &[u8]) {
    let mut first: Option<u8> = None;
    let whole = text.len() / (LINE + 2);
    assert!(whole > 0, "not even one line");
    for (i, line) in text.chunks(LINE + 2).take(whole).enumerate() {
        assert_eq!(&line[LINE..], b"\r\n", "line {i} ends in CRLF");
        let start = (*first.get_or_insert(line[0]) - b' ') as usize;
        for (k, &ch) in line[..LINE].iter().enumerate() {
            assert_eq!(
                ch,
                b' ' + ((start + i + k) % 95) as u8,
                "line {i} column {k}"
            );
        }
    }
}

/// Checks a daytime line against RFC 867's suggested syntax and the clock.
fn check_daytime(line: &[u8]) {
    let text = std::str::from_utf8(line).expect("ASCII");
    assert!(text.ends_with("-UTC\r\n"), "{text:?}");
    let now = SystemTime::now();
    let near: Vec<String> = (-3i64..=3)
        .map(|d| {
            let t = if d < 0 {
                now - Duration::from_secs(d.unsigned_abs())
            } else {
                now + Duration::from_secs(d as u64)
            };
            daytime_line(t)
        })
        .collect();
    assert!(near.iter().any(|l| l == text), "{text:?} is not now");
    let (weekday, rest) = text.split_once(", ").unwrap();
    assert!(weekday.ends_with("day"), "{text:?}");
    let (month_day, rest) = rest.split_once(", ").unwrap();
    let (month, day) = month_day.split_once(' ').unwrap();
    assert!(month.len() >= 3 && day.parse::<u8>().is_ok(), "{text:?}");
    let (year, time) = rest.split_once(' ').unwrap();
    assert_eq!(year.len(), 4);
    assert_eq!(time.len(), "HH:MM:SS-UTC\r\n".len());
}

/// Checks RFC 868's four bytes against the clock.
fn check_time(bytes: &[u8]) {
    assert_eq!(bytes.len(), 4, "exactly 32 bits");
    let got = u32::from_be_bytes(bytes.try_into().unwrap()) as i64;
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let want = (unix + 2_208_988_800) % (1 << 32);
    assert!((got - want).abs() <= 3, "{got} is not now ({want})");
}

fn serve(
    factory: Rc<dyn torsion::Factory>,
    client: impl FnOnce(std::net::SocketAddr) + Send + 'static,
) {
    let reactor = reactor();
    let addr = listen(&reactor, factory);
    let h = client_then_stop(&reactor, move || client(addr));
    run(&reactor);
    join(h);
}

#[test]
fn echo_sends_back_every_byte() {
    serve(Echo::factory(), |addr| {
        let mut s = connect(addr);
        let data = pattern(1 << 20);
        let mut w = s.try_clone().unwrap();
        let writer = thread::spawn(move || w.write_all(&data).map(|_| data));
        let mut back = vec![0u8; 1 << 20];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, writer.join().unwrap().unwrap());
    });
}

#[test]
fn discard_sends_nothing_back() {
    serve(Discard::factory(), |addr| {
        let mut s = connect(addr);
        s.write_all(&pattern(1 << 20)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Err(e) => assert!(matches!(
                e.kind(),
                ErrorKind::WouldBlock | ErrorKind::TimedOut
            )),
            Ok(n) => panic!("discard sent {n} bytes back"),
        }
    });
}

#[test]
fn chargen_sends_the_rotating_lines() {
    serve(Chargen::factory(), |addr| {
        let mut s = connect(addr);
        let mut got = vec![0u8; 3 * CYCLE + 1000];
        s.read_exact(&mut got).unwrap();
        check_chargen(&got);
        assert_eq!(got[0], b' ', "the first line starts at the first character");
    });
}

#[test]
fn chargen_memory_stays_bounded_for_a_reader_that_does_not_read() {
    let reactor = reactor();
    let factory = Rc::new(WrappingFactory::new(Chargen::factory()));
    let addr = listen(&reactor, factory.clone());
    let client = client_then_stop(&reactor, move || {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&addr.into()).unwrap();
        let mut s: TcpStream = sock.into();
        thread::sleep(Duration::from_millis(500));
        // Now read a good stretch, which must still be well formed.
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut got = vec![0u8; 1 << 20];
        s.read_exact(&mut got).unwrap();
        check_chargen(&got);
    });
    let max = Rc::new(Cell::new(0usize));
    let samples = Rc::new(Cell::new(0u32));
    let (m, n, f) = (max.clone(), samples.clone(), factory.clone());
    fn sample(
        r: &torsion::Reactor,
        f: Rc<WrappingFactory>,
        m: Rc<Cell<usize>>,
        n: Rc<Cell<u32>>,
        ticks: u32,
    ) {
        for c in f.connections() {
            if let Some(b) = c.buffered_len() {
                m.set(m.get().max(b));
                n.set(n.get() + 1);
            }
        }
        // Sample while the client does not read (it starts after 500 ms).
        if ticks < 80 {
            r.call_later(Duration::from_millis(5), move |r| {
                sample(r, f, m, n, ticks + 1)
            });
        }
    }
    reactor.call_later(Duration::ZERO, move |r| sample(r, f, m, n, 0));
    run(&reactor);
    join(client);
    assert!(samples.get() >= 40, "{} samples", samples.get());
    assert!(
        max.get() <= DEFAULT_HIGH_WATER + CYCLE,
        "chargen buffered {} bytes",
        max.get()
    );
}

#[test]
fn qotd_sends_the_quote_and_closes() {
    serve(Qotd::factory("Brevity is the soul of wit.\r\n"), |addr| {
        let (got, err) = read_until_closed(&mut connect(addr));
        assert!(err.is_none());
        assert_eq!(got, b"Brevity is the soul of wit.\r\n");
    });
}

#[test]
fn daytime_sends_one_line_and_closes() {
    serve(Daytime::factory(), |addr| {
        let (got, err) = read_until_closed(&mut connect(addr));
        assert!(err.is_none());
        check_daytime(&got);
    });
}

#[test]
fn time_sends_four_bytes_and_closes() {
    serve(Time::factory(), |addr| {
        let (got, err) = read_until_closed(&mut connect(addr));
        assert!(err.is_none());
        check_time(&got);
    });
}

/// `torsion serve ...` on a free port, killed by its PID when dropped.
struct Served(Child, u16);

impl Served {
    fn start(args: &[&str]) -> Served {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = port.to_string();
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--port", &p, "--interface", "127.0.0.1"]);
        let child = Command::new(env!("CARGO_BIN_EXE_torsion"))
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start torsion");
        Served(child, port)
    }

    fn connect(&mut self) -> TcpStream {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.1)) {
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                return s;
            }
            assert!(self.0.try_wait().unwrap().is_none(), "torsion exited");
            assert!(Instant::now() < deadline, "torsion did not listen");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(feature = "cli")]
#[test]
fn the_binary_serves_every_service() {
    let mut echo = Served::start(&["echo"]);
    assert_eq!(echo_round_trip(&mut echo.connect(), b"hello"), b"hello");

    let mut discard = Served::start(&["discard"]);
    let mut s = discard.connect();
    s.write_all(b"gone").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(s.read(&mut [0u8; 1]).is_err(), "discard answers nothing");

    let mut chargen = Served::start(&["chargen"]);
    let mut got = vec![0u8; 2 * CYCLE];
    chargen.connect().read_exact(&mut got).unwrap();
    check_chargen(&got);

    let mut qotd = Served::start(&["qotd", "--quote", "Less is more."]);
    assert_eq!(
        read_until_closed(&mut qotd.connect()).0,
        b"Less is more.\r\n"
    );
    let mut qotd = Served::start(&["qotd"]);
    assert_eq!(
        read_until_closed(&mut qotd.connect()).0,
        b"An apple a day keeps the doctor away.\r\n"
    );

    let mut daytime = Served::start(&["daytime"]);
    check_daytime(&read_until_closed(&mut daytime.connect()).0);

    let mut time = Served::start(&["time"]);
    check_time(&read_until_closed(&mut time.connect()).0);

    let mut chat = Served::start(&["chat", "--max-line", "10", "--idle-timeout", "0.3"]);
    let mut s = chat.connect();
    let mut hello = [0u8; 19];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"What's your name?\r\n");
    s.write_all(b"ann\r\n").unwrap();
    let mut welcome = [0u8; 15];
    s.read_exact(&mut welcome).unwrap();
    assert_eq!(&welcome, b"Welcome, ann!\r\n");
    // Quiet for longer than the idle timeout: closed.
    let start = Instant::now();
    assert!(read_until_closed(&mut s).0.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(250));
    let mut s = chat.connect();
    s.write_all(b"this line is too long\r\n").unwrap();
    assert_eq!(read_until_closed(&mut s).0, b"What's your name?\r\n");
}
