//! Small input checks shared by every service's request validation.

/// Longest idempotency key ([`is_request_id`]).
pub const MAX_REQUEST_ID: usize = 128;
/// Longest email address ([`is_email`]; RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;
/// Most digits of an E.164 number ([`is_e164`]).
pub const MAX_E164_DIGITS: usize = 15;

/// `[a-z0-9-]`, starting with a letter, `min..=max` long, no trailing dash.
pub fn is_slug(s: &str, min: usize, max: usize) -> bool {
    let len = s.len();
    (min..=max).contains(&len)
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A code: `[a-z0-9_-]`, 1..=max long.
pub fn is_code(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// E.164 phone number: `+` then 8 to 15 digits.
pub fn is_e164(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or("");
    (8..=MAX_E164_DIGITS).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}

/// A plausible email address (one `@`, a dot in the domain, no spaces).
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= MAX_EMAIL
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.contains(char::is_whitespace)
        && !s.contains(char::is_control)
        && !domain.contains('@')
}

/// An idempotency key: 1..=128 printable ASCII characters.
pub fn is_request_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_REQUEST_ID && s.chars().all(|c| c.is_ascii_graphic())
}

/// Free text (a description, a note): 1..=max characters, not blank, no
/// control characters other than line breaks and tabs (a NUL byte, which
/// PostgreSQL refuses in text, included).
pub fn is_free_text(s: &str, max: usize) -> bool {
    let n = s.chars().count();
    n >= 1
        && n <= max
        && !s.trim().is_empty()
        && !s
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

/// A human-entered name: 1..=max characters, no control characters.
pub fn is_display_text(s: &str, max: usize) -> bool {
    let n = s.chars().count();
    n >= 1 && n <= max && !s.trim().is_empty() && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["stmarys", "st-marys-2", "ab"] {
            assert!(is_slug(ok, 2, 32), "{ok}");
        }
        for bad in [
            "",
            "a",
            "1abc",
            "St",
            "st_marys",
            "stm-",
            "x".repeat(33).as_str(),
        ] {
            assert!(!is_slug(bad, 2, 32), "{bad}");
        }
    }

    #[test]
    fn phones_emails_keys() {
        assert!(is_e164("+13125550100"));
        assert!(!is_e164("3125550100"));
        assert!(!is_e164("+1-312"));
        assert!(is_email("rn.jones@stmarys.org"));
        assert!(!is_email("rn jones@stmarys.org"));
        assert!(!is_email("nobody"));
        assert!(is_request_id("create-1"));
        assert!(!is_request_id(""));
        assert!(!is_request_id("with space"));
        assert!(is_display_text("Dr. Ana Ruiz", 200));
        assert!(!is_display_text("   ", 200));
        assert!(!is_display_text("a\u{0007}", 200));
        assert!(!is_email("rn\u{0}@stmarys.org"));
        assert!(is_free_text("Line one\n\tline two\r\n", 100));
        assert!(!is_free_text("nul \u{0} byte", 100));
        assert!(!is_free_text("bell \u{7}", 100));
        assert!(!is_free_text(" \n ", 100));
        assert!(!is_free_text(&"x".repeat(101), 100));
    }
}
