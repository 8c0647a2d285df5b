//! Local dates, periods and business hours in the tenant's time zone.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A calendar month, e.g. 2026-03.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    pub year: i32,
    pub month: u32,
}

impl Period {
    /// Parses `"YYYY-MM"`.
    pub fn parse(s: &str) -> Option<Period> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        (1..=12).contains(&month).then_some(Period { year, month })
    }

    /// The period a local date belongs to.
    pub fn of(date: NaiveDate) -> Period {
        Period {
            year: date.year(),
            month: date.month(),
        }
    }

    /// First local day.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid month")
    }

    /// The following period.
    pub fn next(self) -> Period {
        if self.month == 12 {
            Period {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Period {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Last local day.
    pub fn last_day(self) -> NaiveDate {
        self.next()
            .first_day()
            .pred_opt()
            .expect("not the first day of time")
    }

    /// The UTC instant the period starts (local midnight of its first day).
    pub fn start_utc(self, tz: Tz) -> DateTime<Utc> {
        local_midnight(tz, self.first_day())
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The UTC instant of local midnight starting `date` (the first valid
/// instant of the day where a DST gap swallows midnight).
pub fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut t: NaiveDateTime = date.and_hms_opt(0, 0, 0).expect("midnight");
    for _ in 0..4 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"))
}

/// Local date of an instant.
pub fn local_date(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// Parses `"YYYY-MM-DD"`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|_| s.len() == 10)
}

/// Parses `"HH:MM"` (or `"24:00"` as a closing time) into minutes.
pub fn parse_hhmm(s: &str, allow_24: bool) -> Option<u16> {
    if allow_24 && s == "24:00" {
        return Some(1440);
    }
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

pub use wardline_calendar::AfterHours;

/// Business hours per ISO weekday (index 0 = Monday): `[open, close)` minutes.
pub type Week = [Option<(u16, u16)>; 7];

/// Whether `at` is after hours in `tz` under `week` and `holidays`: the
/// shared calendar's rule (`wardline_calendar`), the one routing's
/// business-time clocks use too.
pub fn after_hours(tz: Tz, at: DateTime<Utc>, week: &Week, holidays: &[NaiveDate]) -> AfterHours {
    wardline_calendar::after_hours(tz, at, &wardline_calendar::Week(*week), |d| {
        holidays.contains(&d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chicago() -> Tz {
        "America/Chicago".parse().unwrap()
    }

    #[test]
    fn periods() {
        let p = Period::parse("2026-03").unwrap();
        assert_eq!(p.to_string(), "2026-03");
        assert_eq!(p.last_day(), NaiveDate::from_ymd_opt(2026, 3, 31).unwrap());
        assert_eq!(
            Period::parse("2026-12").unwrap().next().to_string(),
            "2027-01"
        );
        assert_eq!(Period::parse("2028-02").unwrap().last_day().day(), 29);
        for bad in ["2026-13", "2026-3", "26-03", "2026/03", ""] {
            assert!(Period::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn month_boundaries_follow_the_tenants_zone() {
        // 2026-04-01 03:30 UTC is still March 31 in Chicago (UTC-5 in April).
        let at = Utc.with_ymd_and_hms(2026, 4, 1, 3, 30, 0).unwrap();
        assert_eq!(Period::of(local_date(chicago(), at)).to_string(), "2026-03");
        assert_eq!(
            Period::parse("2026-04").unwrap().start_utc(chicago()),
            Utc.with_ymd_and_hms(2026, 4, 1, 5, 0, 0).unwrap()
        );
    }

    #[test]
    fn after_hours_across_daylight_saving() {
        let mut week: Week = [None; 7];
        for d in week.iter_mut().take(5) {
            *d = Some((8 * 60, 17 * 60));
        }
        // Friday 2026-03-06 16:30 CST (UTC-6) = 22:30 UTC: inside.
        let fri = Utc.with_ymd_and_hms(2026, 3, 6, 22, 30, 0).unwrap();
        assert_eq!(after_hours(chicago(), fri, &week, &[]), AfterHours::No);
        // Monday 2026-03-09 16:30 CDT (UTC-5) = 21:30 UTC: inside; 22:30 UTC is 17:30: outside.
        let mon_in = Utc.with_ymd_and_hms(2026, 3, 9, 21, 30, 0).unwrap();
        let mon_out = Utc.with_ymd_and_hms(2026, 3, 9, 22, 30, 0).unwrap();
        assert_eq!(after_hours(chicago(), mon_in, &week, &[]), AfterHours::No);
        assert_eq!(
            after_hours(chicago(), mon_out, &week, &[]),
            AfterHours::OutsideHours
        );
        // Sunday: closed.
        let sun = Utc.with_ymd_and_hms(2026, 3, 8, 18, 0, 0).unwrap();
        assert_eq!(
            after_hours(chicago(), sun, &week, &[]),
            AfterHours::ClosedDay
        );
        // A holiday wins over hours.
        let hol = NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
        assert_eq!(
            after_hours(chicago(), mon_in, &week, &[hol]),
            AfterHours::Holiday
        );
    }

    #[test]
    fn hhmm() {
        assert_eq!(parse_hhmm("24:00", true), Some(1440));
        assert_eq!(parse_hhmm("24:00", false), None);
        assert_eq!(parse_hhmm("08:30", false), Some(510));
        assert!(parse_date("2026-02-30").is_none());
        assert!(parse_date("2026-02-28").is_some());
    }
}
