//! The pure pieces of `wardline-load`: when each request is due (the
//! open-loop arrival schedule), latency histograms and their summaries, and
//! how numbers are printed. Nothing here does I/O, so all of it is tested
//! with plain values.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Highest latency a histogram holds (longer ones are recorded as this).
pub const MAX_LATENCY: Duration = Duration::from_secs(3600);

/// When request `i` (0-based) is due under a fixed arrival rate of `rate`
/// per second, counted from the start of the run.
///
/// The schedule is computed from `i`, never from when the previous request
/// went out: a slow response does not push later requests back (open
/// loop), and latency is measured from this intended time, so a stall of
/// the system under test shows in every request that should have been sent
/// during it (no coordinated omission).
pub fn intended_offset(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// How many requests a fixed-rate run of `duration` sends (at least one).
pub fn planned(rate: f64, duration: Duration) -> u64 {
    ((rate * duration.as_secs_f64()).round() as u64).max(1)
}

/// A latency histogram in microseconds, 3 significant digits, up to
/// [`MAX_LATENCY`].
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY.as_micros() as u64, 3)
        .expect("static histogram bounds are valid")
}

/// Records one latency (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY.as_micros() as u64);
    h.saturating_record(us);
}

/// What one stage's histogram says.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Percentiles and maximum; `None` without samples.
    pub p50: Option<Duration>,
    /// 95th percentile.
    pub p95: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
    /// Largest.
    pub max: Option<Duration>,
    /// Completions per second over the stage's window.
    pub throughput: Option<f64>,
}

impl Summary {
    /// Summarises `h`; `window` is the time from the first intended send to
    /// the stage's last completion (throughput = count / window).
    pub fn of(h: &Histogram<u64>, window: Option<Duration>) -> Self {
        let count = h.len();
        let q = |q: f64| (count > 0).then(|| Duration::from_micros(h.value_at_quantile(q)));
        Self {
            count,
            p50: q(0.50),
            p95: q(0.95),
            p99: q(0.99),
            max: (count > 0).then(|| Duration::from_micros(h.max())),
            throughput: window
                .filter(|w| count > 0 && !w.is_zero())
                .map(|w| count as f64 / w.as_secs_f64()),
        }
    }

    /// A table row: stage, count, p50, p95, p99, max (ms), throughput.
    pub fn row(&self, stage: &str) -> Vec<String> {
        vec![
            stage.to_owned(),
            self.count.to_string(),
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            ms(self.max),
            rate(self.throughput),
        ]
    }

    /// The summary as JSON (milliseconds as numbers, `null` when absent).
    pub fn to_json(&self) -> Value {
        let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3);
        json!({
            "count": self.count,
            "p50_ms": ms(self.p50),
            "p95_ms": ms(self.p95),
            "p99_ms": ms(self.p99),
            "max_ms": ms(self.max),
            "per_second": self.throughput.map(|t| (t * 10.0).round() / 10.0),
        })
    }
}

/// Header of the latency table.
pub const HEADERS: [&str; 7] = [
    "stage",
    "count",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "per second",
];

/// Milliseconds with precision that suits the size: `0.42`, `3.1`, `1250`;
/// `-` when absent.
pub fn ms(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "-".to_owned();
    };
    let v = d.as_secs_f64() * 1e3;
    if v < 1.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A rate: `1234`, `98.5`, `0.42`; `-` when absent.
pub fn rate(r: Option<f64>) -> String {
    match r {
        None => "-".to_owned(),
        Some(v) if v >= 1000.0 => format!("{v:.0}"),
        Some(v) if v >= 1.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// `part` as a percentage of `whole`: `12.5%`, `0.31%`; `-` when unknown.
pub fn percent(part: Option<f64>, whole: Option<f64>) -> String {
    match (part, whole) {
        (Some(p), Some(w)) if w > 0.0 => {
            let v = 100.0 * p / w;
            if v >= 10.0 {
                format!("{v:.0}%")
            } else if v >= 1.0 {
                format!("{v:.1}%")
            } else {
                format!("{v:.2}%")
            }
        }
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_depends_on_the_index_only() {
        assert_eq!(intended_offset(0, 100.0), Duration::ZERO);
        assert_eq!(intended_offset(1, 100.0), Duration::from_millis(10));
        assert_eq!(intended_offset(250, 100.0), Duration::from_millis(2500));
        assert_eq!(intended_offset(3, 0.5), Duration::from_secs(6));
        // Evenly spaced, whatever happened before.
        let gaps: Vec<Duration> = (1..50)
            .map(|i| intended_offset(i, 40.0) - intended_offset(i - 1, 40.0))
            .collect();
        assert!(
            gaps.iter()
                .all(|g| g.abs_diff(Duration::from_millis(25)) < Duration::from_micros(1))
        );
        assert_eq!(planned(100.0, Duration::from_secs(2)), 200);
        assert_eq!(planned(0.1, Duration::from_secs(1)), 1);
    }

    #[test]
    fn summaries_report_percentiles_max_and_throughput() {
        let mut h = histogram();
        for i in 1..=100u64 {
            record(&mut h, Duration::from_millis(i));
        }
        let s = Summary::of(&h, Some(Duration::from_secs(2)));
        assert_eq!(s.count, 100);
        let near = |d: Option<Duration>, ms: u64| {
            d.unwrap().abs_diff(Duration::from_millis(ms)) <= Duration::from_micros(ms * 2)
        };
        assert!(near(s.p50, 50), "{:?}", s.p50);
        assert!(near(s.p95, 95), "{:?}", s.p95);
        assert!(near(s.p99, 99), "{:?}", s.p99);
        assert!(near(s.max, 100), "{:?}", s.max);
        assert_eq!(s.throughput, Some(50.0));
        let row = s.row("create (RPC)");
        assert_eq!(row[0], "create (RPC)");
        assert_eq!(row[1], "100");
        assert_eq!(row[6], "50.0");
        let j = s.to_json();
        assert_eq!(j["count"], 100);
        assert_eq!(j["per_second"], 50.0);
        assert!((j["max_ms"].as_f64().unwrap() - 100.0).abs() < 0.2);
    }

    #[test]
    fn an_empty_stage_prints_dashes_and_nulls() {
        let s = Summary::of(&histogram(), Some(Duration::from_secs(1)));
        assert_eq!(s.count, 0);
        assert_eq!(
            s.row("create->notified"),
            vec!["create->notified", "0", "-", "-", "-", "-", "-"]
        );
        assert!(s.to_json()["p99_ms"].is_null());
        assert!(s.to_json()["per_second"].is_null());
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let mut h = histogram();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(7200));
        assert_eq!(h.len(), 2);
        assert!(h.max() >= MAX_LATENCY.as_micros() as u64 * 999 / 1000);
    }

    #[test]
    fn numbers_print_with_sensible_precision() {
        assert_eq!(ms(Some(Duration::from_micros(420))), "0.42");
        assert_eq!(ms(Some(Duration::from_micros(3140))), "3.1");
        assert_eq!(ms(Some(Duration::from_millis(1250))), "1250");
        assert_eq!(ms(None), "-");
        assert_eq!(rate(Some(1234.4)), "1234");
        assert_eq!(rate(Some(98.46)), "98.5");
        assert_eq!(rate(Some(0.421)), "0.42");
        assert_eq!(percent(Some(60.0), Some(400.0)), "15%");
        assert_eq!(percent(Some(5.0), Some(200.0)), "2.5%");
        assert_eq!(percent(Some(1.0), Some(320.0)), "0.31%");
        assert_eq!(percent(Some(1.0), None), "-");
        assert_eq!(percent(Some(1.0), Some(0.0)), "-");
    }
}
