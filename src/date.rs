//! The `Date` header value (RFC 9110 5.6.7 IMF-fixdate), cached per thread and rebuilt
//! at most once a second.
//!
//! ```text
//! IMF-fixdate  = day-name "," SP date1 SP time-of-day SP GMT
//! ; e.g. Sun, 06 Nov 1994 08:49:37 GMT
//! ```

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate.
pub const IMF_FIXDATE_LEN: usize = 29;

const DAY_NAMES: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTH_NAMES: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn two_digits(out: &mut [u8], n: i64) {
    out[0] = b'0' + (n / 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// The IMF-fixdate of a Unix time (seconds; times before 1970 are clamped to it, years
/// after 9999 are not representable and are clamped too).
pub fn imf_fixdate(unix: i64) -> [u8; IMF_FIXDATE_LEN] {
    const LAST: i64 = 253_402_300_799; // 9999-12-31 23:59:59
    let unix = unix.clamp(0, LAST);
    let mut days = unix / 86_400;
    let secs = unix % 86_400;
    // 1970-01-01 was a Thursday
    let weekday = ((days + 4) % 7) as usize;

    // Whole years, then whole months: at most once a second, so plain loops will do
    let mut year = 1970;
    loop {
        let in_year = if is_leap(year) { 366 } else { 365 };
        if days < in_year {
            break;
        }
        days -= in_year;
        year += 1;
    }
    let month_days = [31, if is_leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 0;
    while days >= month_days[month] {
        days -= month_days[month];
        month += 1;
    }

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[0..3].copy_from_slice(DAY_NAMES[weekday]);
    two_digits(&mut out[5..7], days + 1);
    out[8..11].copy_from_slice(MONTH_NAMES[month]);
    two_digits(&mut out[12..14], year / 100);
    two_digits(&mut out[14..16], year % 100);
    two_digits(&mut out[17..19], secs / 3600);
    two_digits(&mut out[20..22], secs / 60 % 60);
    two_digits(&mut out[23..25], secs % 60);
    out
}

/// The current Unix time in whole seconds (Perl's `time`).
pub fn now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(_) => 0,
    }
}

thread_local! {
    static CACHE: Cell<(i64, [u8; IMF_FIXDATE_LEN])> = const { Cell::new((i64::MIN, [0; IMF_FIXDATE_LEN])) };
}

/// The IMF-fixdate for `unix`, from the cache when it is for the same second.
pub fn cached_imf_fixdate(unix: i64) -> [u8; IMF_FIXDATE_LEN] {
    CACHE.with(|c| {
        let (at, date) = c.get();
        if at == unix {
            return date;
        }
        let date = imf_fixdate(unix);
        c.set((unix, date));
        date
    })
}

/// The IMF-fixdate for now.
pub fn http_date() -> [u8; IMF_FIXDATE_LEN] {
    cached_imf_fixdate(now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(d: [u8; IMF_FIXDATE_LEN]) -> String {
        String::from_utf8(d.to_vec()).unwrap()
    }

    #[test]
    fn known_dates() {
        assert_eq!(s(imf_fixdate(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(s(imf_fixdate(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(s(imf_fixdate(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(s(imf_fixdate(1_709_251_199)), "Thu, 29 Feb 2024 23:59:59 GMT");
        assert_eq!(s(imf_fixdate(4_102_444_800)), "Fri, 01 Jan 2100 00:00:00 GMT");
        assert_eq!(s(imf_fixdate(-5)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(s(imf_fixdate(i64::MAX)), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn every_day_of_four_centuries_is_well_formed() {
        // Day numbers must advance by exactly one, across month, year and leap boundaries
        let mut prev: Option<(i64, usize)> = None;
        for day in (0..146_097 + 365).step_by(1) {
            let d = imf_fixdate(day * 86_400 + 43_200);
            let dd = (d[5] - b'0') as i64 * 10 + (d[6] - b'0') as i64;
            let wd = DAY_NAMES.iter().position(|n| &d[0..3] == *n).unwrap();
            if let Some((pd, pw)) = prev {
                assert!(dd == pd + 1 || dd == 1, "day {day}: {}", s(d));
                assert_eq!(wd, (pw + 1) % 7);
            }
            prev = Some((dd, wd));
            assert_eq!(&d[25..], b" GMT");
        }
    }

    #[test]
    fn cache_is_per_second() {
        assert_eq!(cached_imf_fixdate(784_111_777), imf_fixdate(784_111_777));
        assert_eq!(cached_imf_fixdate(784_111_777), imf_fixdate(784_111_777));
        assert_eq!(cached_imf_fixdate(784_111_778), imf_fixdate(784_111_778));
        let now = s(http_date());
        assert!(now.ends_with(" GMT") && now.len() == 29);
    }
}
