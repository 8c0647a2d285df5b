//! Intake's domain: plain functions and types with no transport or storage
//! in them, tested exhaustively.

pub mod classify;
pub mod lifecycle;
pub mod priority;
pub mod routing;

/// The human-readable number of a ticket, e.g. `STM-000042`. Six digits
/// keep numbers short enough to read over the phone; past a million the
/// number simply grows.
pub fn ticket_number(prefix: &str, seq: i64) -> String {
    format!("{prefix}-{seq:06}")
}

/// True when `s` looks like a ticket number (`ABC-000123`).
pub fn looks_like_number(s: &str) -> bool {
    match s.split_once('-') {
        Some((p, n)) => {
            (2..=6).contains(&p.len())
                && p.chars().all(|c| c.is_ascii_uppercase())
                && n.len() >= 6
                && n.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(ticket_number("STM", 42), "STM-000042");
        assert_eq!(ticket_number("STM", 1_234_567), "STM-1234567");
        assert!(looks_like_number("STM-000042"));
        assert!(!looks_like_number("stm-000042"));
        assert!(!looks_like_number("0190c0de-0000-7000-8000-000000000000"));
    }
}
