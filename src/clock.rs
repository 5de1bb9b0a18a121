//! The one place the system clock is read: wall time as a FILETIME, for clients (to the 100 ns
//! tick, as Windows clients send) and hosts (a system or a virtual clock that tests and simulations
//! move by hand). Everything below this layer takes time as an argument.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::epid::YearDay;
use crate::wire::kms::FileTime;

/// Time since the Unix epoch; a system clock set before 1970 reads as the epoch.
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The system time in FILETIME ticks (100 ns since 1601).
fn system_ticks() -> i64 {
    let d = since_epoch();
    let ticks = (d.as_secs() + FileTime::UNIX_EPOCH_SECS) * FileTime::TICKS_PER_SEC
        + u64::from(d.subsec_nanos() / 100);
    i64::try_from(ticks).unwrap_or(i64::MAX)
}

/// The current time as a FILETIME with sub-second precision, as Windows clients send it (the
/// genuine Windows 11 request carries 134322008406243467; vlmcs sends whole seconds).
pub fn now_filetime() -> FileTime {
    FileTime(u64::try_from(system_ticks()).unwrap_or(0))
}

/// The current wall time (for timestamps in reports and recordings).
pub fn wall() -> SystemTime {
    SystemTime::now()
}

/// The current wall time since the Unix epoch (capture timestamps, Unix seconds).
pub fn unix_now() -> Duration {
    since_epoch()
}

/// A clock a host reads; the virtual one can be moved by hand.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// The system clock plus an adjustable offset.
    Virtual(Arc<VirtualClock>),
}

/// System time plus an offset in FILETIME ticks, moved by [`VirtualClock::advance`].
#[derive(Debug, Default)]
pub struct VirtualClock {
    offset: AtomicI64,
}

impl VirtualClock {
    /// Moves the clock forward (or back, with a negative amount) by `secs` seconds.
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(
            secs.saturating_mul(FileTime::TICKS_PER_SEC as i64),
            Ordering::Relaxed,
        );
    }

    /// How far the clock is from the system clock, in seconds.
    pub fn offset_secs(&self) -> i64 {
        self.offset.load(Ordering::Relaxed) / FileTime::TICKS_PER_SEC as i64
    }

    /// The current time on this clock.
    pub fn now(&self) -> FileTime {
        let ticks = system_ticks().saturating_add(self.offset.load(Ordering::Relaxed));
        FileTime(u64::try_from(ticks).unwrap_or(0))
    }
}

impl Clock {
    /// A new virtual clock starting at the system time.
    pub fn new_virtual() -> Clock {
        Clock::Virtual(Arc::new(VirtualClock::default()))
    }

    /// The current time.
    pub fn now(&self) -> FileTime {
        match self {
            Clock::System => FileTime(u64::try_from(system_ticks()).unwrap_or(0)),
            Clock::Virtual(v) => v.now(),
        }
    }

    /// The virtual clock, if this is one.
    pub fn as_virtual(&self) -> Option<&Arc<VirtualClock>> {
        match self {
            Clock::Virtual(v) => Some(v),
            Clock::System => None,
        }
    }

    /// Today's date, for generated ePIDs.
    pub fn today(&self) -> YearDay {
        let (y, m, d, ..) = self.now().to_utc();
        // FILETIME years fit u16 and months and days u8; a clock out of range gets the
        // project's reference day rather than a panic.
        let ymd = (u16::try_from(y), u8::try_from(m), u8::try_from(d));
        match ymd {
            (Ok(y), Ok(m), Ok(d)) => YearDay::from_ymd(y, m, d),
            _ => None,
        }
        .unwrap_or(YearDay { year: 2026, day: 1 })
    }
}

/// Parses a signed duration in whole seconds: plain seconds (`90`), or any humantime duration
/// (`30d`, `4h`, `1h30m`, `15s`, `500ms` rounded down), optionally negative (`-1d`, for moving
/// a virtual clock back).
pub fn parse_secs(text: &str) -> Option<i64> {
    let text = text.trim();
    let (sign, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest.trim_start()),
        None => (1, text),
    };
    let secs = match magnitude.parse::<u64>() {
        Ok(n) => n,
        Err(_) => humantime::parse_duration(magnitude).ok()?.as_secs(),
    };
    i64::try_from(secs).ok()?.checked_mul(sign)
}

/// Parses a non-negative duration: plain seconds, whole or decimal (`90`, `2.5`, as the
/// timeout options took them before they took humantime), or any humantime duration (`1h30m`,
/// `500ms`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    // Digits and one dot only: `f64`'s parser would also take `inf`, `-1` and `1e3`.
    let decimal = text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|&b| b == b'.').count() == 1
        && text.bytes().any(|b| b.is_ascii_digit());
    if decimal {
        return Duration::try_from_secs_f64(text.parse().ok()?).ok();
    }
    humantime::parse_duration(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_moves_by_whole_seconds() {
        let clock = Clock::new_virtual();
        let v = clock.as_virtual().cloned().expect("a virtual clock");
        v.advance(30 * 86_400);
        assert_eq!(v.offset_secs(), 30 * 86_400);
        let ahead = clock.now().0 - Clock::System.now().0;
        assert!(ahead >= 30 * 86_400 * FileTime::TICKS_PER_SEC - FileTime::TICKS_PER_SEC);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_secs("90"), Some(90));
        assert_eq!(parse_secs("30d"), Some(30 * 86_400));
        assert_eq!(parse_secs("-1d"), Some(-86_400));
        assert_eq!(parse_secs("1h30m"), Some(5_400));
        assert_eq!(parse_secs("4 h"), Some(4 * 3_600));
        assert_eq!(parse_secs("soon"), None);
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("10.0"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2.5"), Some(Duration::from_millis(2_500)));
        assert_eq!(parse_duration(".5"), Some(Duration::from_millis(500)));
        for bad in ["", ".", "-1", "1e3", "inf", "NaN", "1.2.3", "5 parsecs"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("-2m"), None);
    }

    #[test]
    fn client_time_has_sub_second_precision() {
        // Five reads a millisecond apart all landing on a whole second: one chance in 10^35.
        let fractions = (0..5).map(|_| {
            std::thread::sleep(Duration::from_millis(1));
            now_filetime().0 % FileTime::TICKS_PER_SEC
        });
        assert!(fractions.into_iter().any(|f| f != 0));
    }
}
