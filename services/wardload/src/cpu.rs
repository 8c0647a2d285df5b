//! CPU time per ticket from `/proc`: the machine's busy jiffies
//! (`/proc/stat`) and each service's own (`/proc/<pid>/stat`, processes
//! whose `comm` starts with `wardline-`), plus PostgreSQL, nats-server and
//! wardline-load itself so the load generator's share is visible.
//!
//! Jiffies are `USER_HZ` (100 per second on every Linux the services
//! support; `/proc` reports in it whatever the kernel's HZ). Linux only:
//! elsewhere the samples are empty and the report says so.

use std::collections::BTreeMap;

/// Milliseconds per jiffy (`USER_HZ` = 100).
pub const MS_PER_JIFFY: f64 = 10.0;

/// Busy and total jiffies of the whole machine (every core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineTicks {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// busy + idle + iowait.
    pub total: u64,
}

/// Parses the first (`cpu `) line of `/proc/stat`.
pub fn parse_machine(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Some(MachineTicks {
        busy,
        total: busy + at(3) + at(4),
    })
}

/// `(comm, utime + stime)` of a `/proc/<pid>/stat` line. The command name
/// is in parentheses and may itself contain spaces or parentheses, so the
/// fields are counted from the last `)`.
pub fn parse_process(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// The group a process is counted under, or `None` to ignore it. `comm`
/// is cut at 15 characters by the kernel (`wardline-notifi`).
pub fn group(comm: &str, own: bool) -> Option<String> {
    const SERVICES: [&str; 4] = [
        "wardline-intake",
        "wardline-routing",
        "wardline-billing",
        "wardline-notification",
    ];
    if own {
        return Some("wardline-load (load generator)".to_owned());
    }
    if comm.starts_with("wardline-") {
        let full = SERVICES
            .iter()
            .find(|s| s.starts_with(comm))
            .map_or(comm, |s| *s);
        return Some(full.to_owned());
    }
    match comm {
        "postgres" => Some("postgres (all backends)".to_owned()),
        "nats-server" => Some("nats-server".to_owned()),
        _ => None,
    }
}

/// One sample: the machine and every interesting process by pid.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// The machine, when `/proc/stat` was readable.
    pub machine: Option<MachineTicks>,
    /// pid -> (group, jiffies).
    pub processes: BTreeMap<u32, (String, u64)>,
}

/// Reads `/proc` now.
pub fn sample() -> Sample {
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_machine(&s));
    let me = std::process::id();
    let mut processes = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((comm, ticks)) = parse_process(&stat)
                && let Some(g) = group(&comm, pid == me)
            {
                processes.insert(pid, (g, ticks));
            }
        }
    }
    Sample { machine, processes }
}

/// CPU used between two samples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Usage {
    /// Machine busy jiffies, and the share of all cores' time they are.
    pub machine: Option<(u64, f64)>,
    /// Jiffies per group (a process that started in between counts from
    /// zero; one that ended is lost).
    pub groups: BTreeMap<String, u64>,
    /// Logical cores seen.
    pub cores: usize,
}

/// What happened between `before` and `after`.
pub fn between(before: &Sample, after: &Sample) -> Usage {
    let machine = match (before.machine, after.machine) {
        (Some(b), Some(a)) => {
            let busy = a.busy.saturating_sub(b.busy);
            let total = a.total.saturating_sub(b.total);
            Some((
                busy,
                if total > 0 {
                    busy as f64 / total as f64
                } else {
                    0.0
                },
            ))
        }
        _ => None,
    };
    let mut groups: BTreeMap<String, u64> = BTreeMap::new();
    for (pid, (g, ticks)) in &after.processes {
        let start = before
            .processes
            .get(pid)
            .filter(|(bg, _)| bg == g)
            .map_or(0, |(_, t)| *t);
        *groups.entry(g.clone()).or_default() += ticks.saturating_sub(start);
    }
    Usage {
        machine,
        groups,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// CPU milliseconds per ticket of `jiffies` over `tickets`.
pub fn ms_per_ticket(jiffies: u64, tickets: u64) -> Option<f64> {
    (tickets > 0).then(|| jiffies as f64 * MS_PER_JIFFY / tickets as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_line_counts_busy_and_total() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        let m = parse_machine(stat).unwrap();
        assert_eq!(m.busy, 100 + 5 + 50 + 3 + 2 + 1);
        assert_eq!(m.total, m.busy + 1000 + 20);
        assert_eq!(parse_machine("intr 1 2 3"), None);
    }

    #[test]
    fn process_lines_survive_odd_command_names() {
        let line = "4242 (wardline-routi) S 1 4242 4242 0 -1 4194560 1234 0 0 0 731 269 0 0 20 0 9 0 123 0 0";
        assert_eq!(
            parse_process(line),
            Some(("wardline-routi".to_owned(), 1000))
        );
        let odd = "7 (a) b (c)) R 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 0 0";
        assert_eq!(parse_process(odd), Some(("a) b (c)".to_owned(), 11)));
        assert_eq!(parse_process("garbage"), None);
    }

    #[test]
    fn processes_group_under_their_service() {
        assert_eq!(
            group("wardline-notifi", false).as_deref(),
            Some("wardline-notification")
        );
        assert_eq!(
            group("wardline-intake", false).as_deref(),
            Some("wardline-intake")
        );
        assert_eq!(
            group("postgres", false).as_deref(),
            Some("postgres (all backends)")
        );
        assert_eq!(group("bash", false), None);
        assert_eq!(
            group("wardline-load", true).as_deref(),
            Some("wardline-load (load generator)")
        );
    }

    #[test]
    fn usage_is_the_difference_and_new_processes_count_from_zero() {
        let mut before = Sample {
            machine: Some(MachineTicks {
                busy: 100,
                total: 1000,
            }),
            ..Default::default()
        };
        before.processes.insert(1, ("wardline-intake".into(), 50));
        before
            .processes
            .insert(2, ("postgres (all backends)".into(), 10));
        let mut after = Sample {
            machine: Some(MachineTicks {
                busy: 300,
                total: 1800,
            }),
            ..Default::default()
        };
        after.processes.insert(1, ("wardline-intake".into(), 80));
        after
            .processes
            .insert(2, ("postgres (all backends)".into(), 15));
        after
            .processes
            .insert(3, ("postgres (all backends)".into(), 7));
        let u = between(&before, &after);
        assert_eq!(u.machine, Some((200, 0.25)));
        assert_eq!(u.groups["wardline-intake"], 30);
        assert_eq!(u.groups["postgres (all backends)"], 12);
        assert_eq!(ms_per_ticket(200, 100), Some(20.0));
        assert_eq!(ms_per_ticket(200, 0), None);
    }
}
