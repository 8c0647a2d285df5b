//! Business calendars and time arithmetic on them, with no knowledge of
//! tickets, contracts or SLAs: routing's business-time SLA clocks and
//! billing's after-hours rule both ask this crate, so a hospital's hours
//! mean one thing everywhere (issue 13).
//!
//! A [`Calendar`] is a time zone, business hours per weekday and holidays;
//! [`Calendars`] are a tenant's versions of it, each in force from a local
//! date on. All instants are UTC; local time is used only to decide what is
//! business time, so daylight-saving changes move the UTC edges of a
//! business day, never its length in local hours.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use wardline_calendar::{Calendar, Week};
//!
//! let cal = Calendar::new("America/Chicago".parse().unwrap(), Week::weekdays(8 * 60, 17 * 60), []);
//! // A P4 logged Friday 16:55 with a 4-business-hour target ...
//! let friday = Utc.with_ymd_and_hms(2026, 3, 6, 22, 55, 0).unwrap(); // 16:55 CST
//! // ... is due Monday 11:55 CDT (the clocks sprang forward on Sunday).
//! let due = cal.add_business_minutes(friday, 240);
//! assert_eq!(due, Utc.with_ymd_and_hms(2026, 3, 9, 16, 55, 0).unwrap());
//! ```

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike,
    Utc,
};
use chrono_tz::Tz;

/// Minutes in a day; a closing time of `24:00` is this.
pub const DAY_MINUTES: u16 = 1440;

/// Why a calendar is unusable, naming the part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// A day's hours do not open before they close, or pass 24:00.
    #[error("hours[{day}]: open before close, within 00:00-24:00")]
    Hours {
        /// ISO weekday index, 0 = Monday.
        day: usize,
    },
    /// No business time at all: business-time clocks would never run.
    #[error("hours: at least one day with business hours")]
    NoHours,
    /// Two versions take effect on the same date.
    #[error("versions: two take effect on {0}")]
    SameDate(NaiveDate),
}

/// Business hours per ISO weekday (index 0 = Monday): `[open, close)` in
/// minutes after local midnight, or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Week(pub [Option<(u16, u16)>; 7]);

impl Week {
    /// Monday to Friday, `open..close` minutes; the weekend closed.
    pub fn weekdays(open: u16, close: u16) -> Self {
        let mut w = [None; 7];
        for d in w.iter_mut().take(5) {
            *d = Some((open, close));
        }
        Week(w)
    }

    /// Every day, all day: business time is all time.
    pub fn always() -> Self {
        Week([Some((0, DAY_MINUTES)); 7])
    }

    /// The hours of `day` (ISO weekday index, 0 = Monday).
    pub fn hours(&self, day: usize) -> Option<(u16, u16)> {
        self.0[day]
    }

    /// Why these hours are unusable.
    pub fn validate(&self) -> Result<(), CalendarError> {
        for (day, h) in self.0.iter().enumerate() {
            if let Some((open, close)) = *h
                && (open >= close || close > DAY_MINUTES)
            {
                return Err(CalendarError::Hours { day });
            }
        }
        if self.0.iter().all(Option::is_none) {
            return Err(CalendarError::NoHours);
        }
        Ok(())
    }
}

/// Why a moment is outside business time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterHours {
    /// Within business hours.
    No,
    /// Outside the weekday's hours.
    OutsideHours,
    /// A weekday without hours.
    ClosedDay,
    /// A holiday.
    Holiday,
}

/// A time zone, weekly business hours and holidays (local dates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    zone: Tz,
    week: Week,
    holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// A calendar; see [`Week::validate`] for what makes one usable.
    pub fn new(zone: Tz, week: Week, holidays: impl IntoIterator<Item = NaiveDate>) -> Self {
        Self {
            zone,
            week,
            holidays: holidays.into_iter().collect(),
        }
    }

    /// The time zone.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The weekly hours.
    pub fn week(&self) -> &Week {
        &self.week
    }

    /// Whether `date` (local) is a holiday.
    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.contains(&date)
    }

    /// The local date of `at`.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.zone).date_naive()
    }

    /// Whether `at` is business time, and if not, why.
    pub fn after_hours(&self, at: DateTime<Utc>) -> AfterHours {
        after_hours(self.zone, at, &self.week, |d| self.is_holiday(d))
    }

    /// The business intervals of local `date`, as UTC `[start, end)`; none
    /// on a holiday or a closed day.
    pub fn business_interval(&self, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if self.is_holiday(date) {
            return None;
        }
        let (open, close) = self
            .week
            .hours(date.weekday().num_days_from_monday() as usize)?;
        let start = self.instant(date, open);
        let end = self.instant(date, close);
        (start < end).then_some((start, end))
    }

    /// The UTC instant of local `date` at `minute` after midnight. A local
    /// time the clocks skip (spring forward) is the first one after the
    /// gap; a repeated one (fall back) its first occurrence.
    fn instant(&self, date: NaiveDate, minute: u16) -> DateTime<Utc> {
        let naive = if minute >= DAY_MINUTES {
            NaiveDateTime::new(date + Days::new(1), NaiveTime::MIN)
        } else {
            let t = NaiveTime::from_hms_opt(u32::from(minute / 60), u32::from(minute % 60), 0)
                .unwrap_or(NaiveTime::MIN);
            NaiveDateTime::new(date, t)
        };
        local_to_utc(self.zone, naive)
    }

    /// `minutes` of business time after `start`: the instant a
    /// business-time target set at `start` falls due. Time before the next
    /// opening does not count; holidays and closed days are skipped.
    pub fn add_business_minutes(&self, start: DateTime<Utc>, minutes: u32) -> DateTime<Utc> {
        let mut left = i64::from(minutes);
        let mut date = self.local_date(start);
        // A calendar without hours never lets business time pass: give up
        // after ten years of days rather than loop (validate() refuses it).
        for _ in 0..3660 {
            if let Some((open, close)) = self.business_interval(date) {
                let from = open.max(start);
                if from < close {
                    let available = (close - from).num_minutes();
                    if left <= available {
                        return from + chrono::Duration::minutes(left);
                    }
                    left -= available;
                }
            }
            date = date + Days::new(1);
        }
        DateTime::<Utc>::MAX_UTC
    }

    /// Business minutes in `[from, to)` (0 when `to <= from`).
    pub fn business_minutes_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        if to <= from {
            return 0;
        }
        let mut total = 0;
        let mut date = self.local_date(from);
        let last = self.local_date(to);
        while date <= last {
            if let Some((open, close)) = self.business_interval(date) {
                let (s, e) = (open.max(from), close.min(to));
                if s < e {
                    total += (e - s).num_minutes();
                }
            }
            date = date + Days::new(1);
        }
        total
    }
}

/// Whether `at` is business time in `zone` under `week` and the holidays
/// `is_holiday` names, and if not, why: [`Calendar::after_hours`] for a
/// caller that keeps the parts apart (billing keeps the hours and holidays
/// in the contract and the zone with the tenant).
pub fn after_hours(
    zone: Tz,
    at: DateTime<Utc>,
    week: &Week,
    is_holiday: impl Fn(NaiveDate) -> bool,
) -> AfterHours {
    let local = at.with_timezone(&zone);
    if is_holiday(local.date_naive()) {
        return AfterHours::Holiday;
    }
    let day = local.weekday().num_days_from_monday() as usize;
    let minute = (local.hour() * 60 + local.minute()) as u16;
    match week.hours(day) {
        None => AfterHours::ClosedDay,
        Some((open, close)) if minute >= open && minute < close => AfterHours::No,
        Some(_) => AfterHours::OutsideHours,
    }
}

/// `naive` local time in `zone` as UTC (see [`Calendar`]'s rules for gaps
/// and repeats).
pub fn local_to_utc(zone: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: the first minute that exists after it.
            let mut probe = naive;
            for _ in 0..180 {
                probe += chrono::Duration::minutes(1);
                if let Some(t) = zone.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&naive)
        }
    }
}

/// A tenant's calendar versions, each in force from its local date until
/// the next one's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Calendars {
    versions: Vec<(NaiveDate, Calendar)>,
}

impl Calendars {
    /// The versions, in any order; refused when two share a date or one is
    /// unusable.
    pub fn new(
        versions: impl IntoIterator<Item = (NaiveDate, Calendar)>,
    ) -> Result<Self, CalendarError> {
        let mut versions: Vec<(NaiveDate, Calendar)> = versions.into_iter().collect();
        versions.sort_by_key(|(from, _)| *from);
        for pair in versions.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(CalendarError::SameDate(pair[0].0));
            }
        }
        for (_, c) in &versions {
            c.week.validate()?;
        }
        Ok(Self { versions })
    }

    /// The version in force at `at` (its local date in that version's own
    /// zone), or `None` before the first.
    pub fn at(&self, at: DateTime<Utc>) -> Option<&Calendar> {
        self.versions
            .iter()
            .rev()
            .find(|(from, c)| c.local_date(at) >= *from)
            .map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests;
