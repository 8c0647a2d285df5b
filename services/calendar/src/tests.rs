use chrono::{Duration, NaiveDate, TimeZone, Utc};

use super::*;

fn chicago() -> Tz {
    "America/Chicago".parse().unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

/// Monday to Friday 08:00-17:00 in Chicago.
fn office(holidays: &[NaiveDate]) -> Calendar {
    Calendar::new(
        chicago(),
        Week::weekdays(8 * 60, 17 * 60),
        holidays.iter().copied(),
    )
}

#[test]
fn a_p4_logged_friday_afternoon_falls_due_monday_mid_morning() {
    // Friday 2026-03-06 16:55 CST (UTC-6); the clocks spring forward on
    // Sunday the 8th, so Monday 08:00 is 13:00 UTC (CDT, UTC-5).
    let friday = utc(2026, 3, 6, 22, 55);
    let due = office(&[]).add_business_minutes(friday, 4 * 60);
    assert_eq!(due, utc(2026, 3, 9, 16, 55), "Monday 11:55 CDT");
    // Wall-clock, the same target would have fallen due Friday night.
    assert_eq!(friday + Duration::hours(4), utc(2026, 3, 7, 2, 55));
}

#[test]
fn holidays_and_closed_days_do_not_count() {
    let friday = utc(2026, 3, 6, 22, 55);
    let due = office(&[date(2026, 3, 9)]).add_business_minutes(friday, 4 * 60);
    assert_eq!(
        due,
        utc(2026, 3, 10, 16, 55),
        "Tuesday 11:55: Monday is a holiday"
    );
    assert_eq!(
        office(&[date(2026, 3, 9)]).after_hours(due - Duration::days(1)),
        AfterHours::Holiday
    );
}

#[test]
fn time_before_opening_and_at_closing_is_not_business_time() {
    let cal = office(&[]);
    // Monday 2026-03-02 06:00 CST = 12:00 UTC; opens 14:00 UTC.
    assert_eq!(
        cal.add_business_minutes(utc(2026, 3, 2, 12, 0), 60),
        utc(2026, 3, 2, 15, 0)
    );
    // Friday 17:00 CST exactly: the next business minute is Monday's first.
    assert_eq!(
        cal.add_business_minutes(utc(2026, 3, 6, 23, 0), 1),
        utc(2026, 3, 9, 13, 1)
    );
    // Zero minutes inside hours is now; outside, the next opening.
    assert_eq!(
        cal.add_business_minutes(utc(2026, 3, 2, 15, 0), 0),
        utc(2026, 3, 2, 15, 0)
    );
    assert_eq!(
        cal.add_business_minutes(utc(2026, 3, 7, 15, 0), 0),
        utc(2026, 3, 9, 13, 0)
    );
}

#[test]
fn business_minutes_between_skip_nights_and_weekends() {
    let cal = office(&[]);
    // Friday 16:00 CST to Monday 09:00 CDT: one hour each side.
    assert_eq!(
        cal.business_minutes_between(utc(2026, 3, 6, 22, 0), utc(2026, 3, 9, 14, 0)),
        120
    );
    assert_eq!(
        cal.business_minutes_between(utc(2026, 3, 9, 14, 0), utc(2026, 3, 6, 22, 0)),
        0
    );
    // What add_business_minutes adds, business_minutes_between measures.
    let start = utc(2026, 3, 5, 20, 17);
    for minutes in [0, 1, 43, 540, 541, 2000, 10_000] {
        let end = cal.add_business_minutes(start, minutes);
        assert_eq!(
            cal.business_minutes_between(start, end),
            i64::from(minutes),
            "{minutes}"
        );
    }
}

#[test]
fn an_always_open_calendar_is_wall_clock_time_across_daylight_saving() {
    let cal = Calendar::new(chicago(), Week::always(), []);
    // Spring forward: 2026-03-08 00:30 CST (06:30 UTC) + 4 h = 10:30 UTC.
    assert_eq!(
        cal.add_business_minutes(utc(2026, 3, 8, 6, 30), 240),
        utc(2026, 3, 8, 10, 30)
    );
    // Fall back: 2026-11-01 is 25 hours long in Chicago.
    let midnight = local_to_utc(chicago(), date(2026, 11, 1).and_hms_opt(0, 0, 0).unwrap());
    let next = local_to_utc(chicago(), date(2026, 11, 2).and_hms_opt(0, 0, 0).unwrap());
    assert_eq!(cal.business_minutes_between(midnight, next), 25 * 60);
    assert_eq!(cal.add_business_minutes(midnight, 25 * 60), next);
}

#[test]
fn hours_that_start_in_the_spring_gap_open_when_the_clocks_allow() {
    // Open 02:30-05:00 daily; 2026-03-08 02:30 does not exist in Chicago.
    let mut week = Week::default();
    week.0[6] = Some((150, 300)); // Sunday
    let cal = Calendar::new(chicago(), week, []);
    let (open, close) = cal.business_interval(date(2026, 3, 8)).unwrap();
    assert_eq!(
        open,
        utc(2026, 3, 8, 8, 0),
        "03:00 CDT, the first minute after the gap"
    );
    assert_eq!(close, utc(2026, 3, 8, 10, 0), "05:00 CDT");
}

#[test]
fn after_hours_says_why() {
    let cal = office(&[date(2026, 3, 9)]);
    // Friday 2026-03-06 16:30 CST = 22:30 UTC: inside.
    assert_eq!(cal.after_hours(utc(2026, 3, 6, 22, 30)), AfterHours::No);
    // Tuesday 2026-03-10 16:30 CDT = 21:30 UTC inside; 22:30 UTC is 17:30 CDT.
    assert_eq!(cal.after_hours(utc(2026, 3, 10, 21, 30)), AfterHours::No);
    assert_eq!(
        cal.after_hours(utc(2026, 3, 10, 22, 30)),
        AfterHours::OutsideHours
    );
    assert_eq!(
        cal.after_hours(utc(2026, 3, 8, 18, 0)),
        AfterHours::ClosedDay
    );
    assert_eq!(cal.after_hours(utc(2026, 3, 9, 18, 0)), AfterHours::Holiday);
}

#[test]
fn the_version_in_force_is_the_last_one_started_by_the_local_date() {
    let summer = Calendar::new(chicago(), Week::weekdays(7 * 60, 19 * 60), []);
    let versions = Calendars::new([
        (date(2026, 6, 1), summer.clone()),
        (date(2026, 1, 1), office(&[])),
    ])
    .unwrap();
    assert!(versions.at(utc(2025, 12, 31, 12, 0)).is_none());
    assert_eq!(versions.at(utc(2026, 5, 31, 12, 0)), Some(&office(&[])));
    // 2026-06-01 03:00 UTC is still May 31 in Chicago.
    assert_eq!(versions.at(utc(2026, 6, 1, 3, 0)), Some(&office(&[])));
    assert_eq!(versions.at(utc(2026, 6, 1, 6, 0)), Some(&summer));
    assert_eq!(
        Calendars::new([(date(2026, 1, 1), office(&[])), (date(2026, 1, 1), summer)]),
        Err(CalendarError::SameDate(date(2026, 1, 1)))
    );
}

#[test]
fn unusable_hours_are_refused_by_day() {
    let mut week = Week::weekdays(8 * 60, 17 * 60);
    week.0[2] = Some((17 * 60, 8 * 60));
    assert_eq!(week.validate(), Err(CalendarError::Hours { day: 2 }));
    week.0[2] = Some((0, DAY_MINUTES + 1));
    assert_eq!(week.validate(), Err(CalendarError::Hours { day: 2 }));
    assert_eq!(Week::default().validate(), Err(CalendarError::NoHours));
    assert_eq!(Week::always().validate(), Ok(()));
    assert_eq!(
        Calendars::new([(
            date(2026, 1, 1),
            Calendar::new(chicago(), Week::default(), [])
        )]),
        Err(CalendarError::NoHours)
    );
}
