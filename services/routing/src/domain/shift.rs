//! Whether an analyst is on shift at an instant.
//!
//! Shifts are weekly, in the analyst's own time zone (a night analyst in
//! Manila covering a Chicago hospital works Manila hours). A shift whose end
//! is not after its start crosses midnight into the next day. An analyst
//! with no shifts at all is treated as always on shift: availability alone
//! then governs, which is what a small desk without rosters expects.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

/// One weekly shift. `day` is ISO (1 = Monday .. 7 = Sunday); minutes are
/// from local midnight; `end <= start` means the shift ends the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub day: u8,
    pub start_minute: u16,
    pub end_minute: u16,
}

/// Parses `"HH:MM"` into minutes from midnight.
pub fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Formats minutes from midnight as `"HH:MM"`.
pub fn format_hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// True when `now` falls inside one of `shifts` in time zone `tz`.
pub fn on_shift(shifts: &[Shift], tz: Tz, now: DateTime<Utc>) -> bool {
    if shifts.is_empty() {
        return true;
    }
    let local = now.with_timezone(&tz);
    let day = local.weekday().number_from_monday() as u8;
    let yesterday = if day == 1 { 7 } else { day - 1 };
    let minute = (local.hour() * 60 + local.minute()) as u16;
    shifts.iter().any(|s| {
        if s.end_minute > s.start_minute {
            s.day == day && (s.start_minute..s.end_minute).contains(&minute)
        } else {
            (s.day == day && minute >= s.start_minute)
                || (s.day == yesterday && minute < s.end_minute)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn hhmm() {
        assert_eq!(parse_hhmm("07:30"), Some(450));
        assert_eq!(parse_hhmm("23:59"), Some(1439));
        for bad in ["24:00", "7:30", "07:60", "0730", "", "ab:cd"] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
        assert_eq!(format_hhmm(450), "07:30");
    }

    #[test]
    fn day_shift_in_the_analysts_zone() {
        let chicago: Tz = "America/Chicago".parse().unwrap();
        // Wednesday 2026-11-25, 07:00-19:00 Chicago (UTC-6).
        let shifts = [Shift {
            day: 3,
            start_minute: 7 * 60,
            end_minute: 19 * 60,
        }];
        assert!(!on_shift(&shifts, chicago, utc(2026, 11, 25, 12, 59))); // 06:59 local
        assert!(on_shift(&shifts, chicago, utc(2026, 11, 25, 13, 0))); // 07:00 local
        assert!(on_shift(&shifts, chicago, utc(2026, 11, 26, 0, 59))); // 18:59 local
        assert!(!on_shift(&shifts, chicago, utc(2026, 11, 26, 1, 0))); // 19:00 local
    }

    #[test]
    fn night_shift_crosses_midnight() {
        let tz: Tz = "UTC".parse().unwrap();
        // Sunday 19:00 to Monday 07:00.
        let shifts = [Shift {
            day: 7,
            start_minute: 19 * 60,
            end_minute: 7 * 60,
        }];
        assert!(on_shift(&shifts, tz, utc(2026, 11, 29, 23, 0))); // Sunday 23:00
        assert!(on_shift(&shifts, tz, utc(2026, 11, 30, 6, 59))); // Monday 06:59
        assert!(!on_shift(&shifts, tz, utc(2026, 11, 30, 7, 0))); // Monday 07:00
        assert!(!on_shift(&shifts, tz, utc(2026, 11, 29, 18, 59))); // Sunday 18:59
    }

    #[test]
    fn no_roster_means_always_on_shift() {
        assert!(on_shift(&[], chrono_tz::UTC, Utc::now()));
    }

    #[test]
    fn daylight_saving_is_respected() {
        let chicago: Tz = "America/Chicago".parse().unwrap();
        // Sunday 2026-03-08 09:00-17:00 local; DST starts at 02:00 that day (UTC-5 after).
        let shifts = [Shift {
            day: 7,
            start_minute: 9 * 60,
            end_minute: 17 * 60,
        }];
        assert!(on_shift(&shifts, chicago, utc(2026, 3, 8, 14, 0))); // 09:00 CDT
        assert!(!on_shift(&shifts, chicago, utc(2026, 3, 8, 13, 59))); // 08:59 CDT
    }
}
