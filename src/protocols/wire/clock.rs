//! [`Daytime`] (RFC 867) and [`Time`] (RFC 868): the time, for people and for machines.

use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::factory::from_fn;
use crate::{Cx, Factory, Protocol};

/// Seconds from 1900-01-01 to 1970-01-01 (RFC 868).
const SECONDS_1900_TO_1970: u64 = 2_208_988_800;

const WEEKDAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The civil date of a day counted from 1970-01-01: (year, month 1..=12, day 1..=31)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Seconds since 1970 (negative before it).
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

/// The daytime line for `t`, in RFC 867's suggested form, in UTC, with `\r\n`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use torsion::protocols::wire::daytime_line;
///
/// let t = UNIX_EPOCH + Duration::from_secs(383_247_463);
/// assert_eq!(daytime_line(t), "Monday, February 22, 1982 17:37:43-UTC\r\n");
/// ```
pub fn daytime_line(t: SystemTime) -> String {
    let secs = unix_seconds(t);
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {} {}, {} {:02}:{:02}:{:02}-UTC\r\n",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[month as usize - 1],
        day,
        year,
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// RFC 868's four bytes for `t`: seconds since 1900-01-01 00:00 UTC, big-endian, modulo
/// 2³² (so the count wraps in 2036, as the RFC's clients expect).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use torsion::protocols::wire::time_bytes;
///
/// assert_eq!(u32::from_be_bytes(time_bytes(UNIX_EPOCH)), 2_208_988_800);
/// // RFC 868's own example: 2,629,584,000 is 1983-05-01 00:00 GMT.
/// let may_1983 = UNIX_EPOCH + Duration::from_secs(2_629_584_000 - 2_208_988_800);
/// assert_eq!(time_bytes(may_1983), 2_629_584_000u32.to_be_bytes());
/// ```
pub fn time_bytes(t: SystemTime) -> [u8; 4] {
    let since_1900 = unix_seconds(t) + SECONDS_1900_TO_1970 as i64;
    (since_1900.rem_euclid(1 << 32) as u32).to_be_bytes()
}

/// RFC 867: sends the date and time as one human-readable line, then closes.
///
/// ```
/// use torsion::protocols::wire::Daytime;
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Protocol, Reactor};
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// Daytime.connection_made(&mut Cx::new(&mut t, &reactor));
/// assert!(t.value().ends_with(b"-UTC\r\n") && t.disconnecting());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Daytime;

impl Daytime {
    /// A factory of [`Daytime`] protocols.
    pub fn factory() -> Rc<dyn Factory> {
        Rc::new(from_fn(|_| Some(Box::new(Daytime) as Box<dyn Protocol>)))
    }
}

impl Protocol for Daytime {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        cx.transport()
            .write(daytime_line(SystemTime::now()).as_bytes());
        cx.transport().lose_connection();
    }
}

/// RFC 868: sends the time as four bytes ([`time_bytes`]), then closes.
///
/// ```
/// use torsion::protocols::wire::Time;
/// use torsion::testing::StringTransport;
/// use torsion::{Cx, Protocol, Reactor};
///
/// let reactor = Reactor::new()?;
/// let mut t = StringTransport::new();
/// Time.connection_made(&mut Cx::new(&mut t, &reactor));
/// assert_eq!(t.value().len(), 4);
/// assert!(t.disconnecting());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Time;

impl Time {
    /// A factory of [`Time`] protocols.
    pub fn factory() -> Rc<dyn Factory> {
        Rc::new(from_fn(|_| Some(Box::new(Time) as Box<dyn Protocol>)))
    }
}

impl Protocol for Time {
    fn connection_made(&mut self, cx: &mut Cx<'_>) {
        cx.transport().write(&time_bytes(SystemTime::now()));
        cx.transport().lose_connection();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: i64) -> SystemTime {
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    }

    #[test]
    fn daytime_matches_known_dates() {
        assert_eq!(
            daytime_line(at(0)),
            "Thursday, January 1, 1970 00:00:00-UTC\r\n"
        );
        assert_eq!(
            daytime_line(at(951_782_400)),
            "Tuesday, February 29, 2000 00:00:00-UTC\r\n"
        );
        assert_eq!(
            daytime_line(at(1_795_727_765)),
            "Thursday, November 26, 2026 21:16:05-UTC\r\n"
        );
        assert_eq!(
            daytime_line(at(-1)),
            "Wednesday, December 31, 1969 23:59:59-UTC\r\n"
        );
    }

    #[test]
    fn the_days_agree_with_a_plain_count() {
        // Walk day by day across 1600 years and check against a naive calendar.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for days in 0..584_400i64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn time_wraps_in_2036() {
        let wrap = (1i64 << 32) - SECONDS_1900_TO_1970 as i64;
        assert_eq!(time_bytes(at(wrap - 1)), [0xff; 4]);
        assert_eq!(time_bytes(at(wrap)), [0; 4]);
    }
}
