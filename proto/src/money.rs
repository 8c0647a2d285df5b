//! Amounts for people: integer minor units shown and read in the major
//! unit with as many decimals as ISO 4217 gives the currency (USD 4500 is
//! `45.00`, JPY 4500 is `4500`, BHD 4500 is `4.500`), by string handling
//! alone: no floating point, nothing rounded. A code ISO 4217 does not list,
//! or lists without a minor unit (XAU, XXX), is shown and read in whole
//! minor units, so an amount is never scaled by a guess.
//!
//! Pure formatting and parsing over `(minor units, currency code)`, so any
//! client or service can use it without depending on another service.

use std::fmt;

use crate::common::Money;

/// Decimals of `currency`'s minor unit per ISO 4217 (2 for USD, 0 for JPY,
/// 3 for BHD); `None` for a code it does not list with a minor unit.
pub fn decimals(currency: &str) -> Option<u32> {
    iso_currency::Currency::from_code(currency.trim())
        .and_then(|c| c.exponent())
        .map(u32::from)
}

/// `minor_units` of `currency` in major units: `45.00`, `-12.50`, `4500` (JPY).
pub fn format(minor_units: i64, currency: &str) -> String {
    let places = decimals(currency).unwrap_or(0);
    let sign = if minor_units < 0 { "-" } else { "" };
    let abs = minor_units.unsigned_abs();
    if places == 0 {
        return format!("{sign}{abs}");
    }
    let unit = 10u64.pow(places);
    format!(
        "{sign}{}.{:0width$}",
        abs / unit,
        abs % unit,
        width = places as usize
    )
}

/// Why a text is not an amount of a currency.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not digits with an optional sign and one decimal point.
    #[error("{0:?}: expected digits with an optional decimal point, e.g. 45.00")]
    Malformed(String),
    /// More decimals than the currency's minor unit has.
    #[error("{text:?}: {currency} has {places} decimal(s); amounts are exact, never rounded")]
    TooPrecise {
        /// The text.
        text: String,
        /// The currency.
        currency: String,
        /// Its decimals.
        places: u32,
    },
    /// Beyond an i64 of minor units.
    #[error("{0:?}: too large")]
    TooLarge(String),
}

/// Reads `text` (`45`, `45.5`, `-12.50`) as minor units of `currency`,
/// exactly: more decimals than the currency has is an error, never rounded.
pub fn parse(text: &str, currency: &str) -> Result<i64, ParseError> {
    let t = text.trim();
    let places = decimals(currency).unwrap_or(0);
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let has_point = digits.contains('.');
    if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || (has_point && frac.is_empty())
    {
        return Err(ParseError::Malformed(t.to_owned()));
    }
    if frac.len() > places as usize {
        return Err(ParseError::TooPrecise {
            text: t.to_owned(),
            currency: currency.trim().to_owned(),
            places,
        });
    }
    let too_large = || ParseError::TooLarge(t.to_owned());
    let padded = format!("{whole}{frac:0<width$}", width = places as usize);
    let minor: i64 = padded.parse().map_err(|_| too_large())?;
    Ok(if negative { -minor } else { minor })
}

impl Money {
    /// The amount in major units, without the currency: `45.00`.
    pub fn major(&self) -> String {
        format(self.minor_units, &self.currency)
    }
}

/// `45.00 USD` (`45.00` when the currency is empty).
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.currency.is_empty() {
            f.write_str(&self.major())
        } else {
            write!(f, "{} {}", self.major(), self.currency)
        }
    }
}

/// The sum of `amounts` per currency, `12.50 USD + 300 JPY`, in order of
/// first appearance; `0` when there are none.
pub fn total<'a>(amounts: impl IntoIterator<Item = &'a Money>) -> String {
    let mut sums: Vec<Money> = Vec::new();
    for m in amounts {
        match sums.iter_mut().find(|s| s.currency == m.currency) {
            Some(s) => s.minor_units = s.minor_units.saturating_add(m.minor_units),
            None => sums.push(m.clone()),
        }
    }
    if sums.is_empty() {
        return "0".to_owned();
    }
    sums.iter()
        .map(Money::to_string)
        .collect::<Vec<_>>()
        .join(" + ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_show_the_currency_decimals() {
        assert_eq!(format(4500, "USD"), "45.00");
        assert_eq!(format(-1250, "EUR"), "-12.50");
        assert_eq!(format(7, "USD"), "0.07");
        assert_eq!(format(4500, "JPY"), "4500");
        assert_eq!(format(4500, "BHD"), "4.500");
        assert_eq!(format(4500, "CLF"), "0.4500");
        assert_eq!(format(4500, "XAU"), "4500", "no minor unit");
        assert_eq!(format(4500, "ZZZ"), "4500", "not ISO 4217");
        assert_eq!(format(i64::MIN, "USD"), "-92233720368547758.08");
        let m = Money {
            currency: "USD".into(),
            minor_units: 242_500,
        };
        assert_eq!(m.to_string(), "2425.00 USD");
        assert_eq!(m.major(), "2425.00");
    }

    #[test]
    fn text_reads_back_exactly() {
        assert_eq!(parse("45", "USD"), Ok(4500));
        assert_eq!(parse("45.5", "USD"), Ok(4550));
        assert_eq!(parse(" 45.00 ", "USD"), Ok(4500));
        assert_eq!(parse("-12.50", "USD"), Ok(-1250));
        assert_eq!(parse("4500", "JPY"), Ok(4500));
        assert_eq!(parse("4.5", "BHD"), Ok(4500));
        assert!(matches!(
            parse("45.001", "USD"),
            Err(ParseError::TooPrecise { places: 2, .. })
        ));
        assert!(matches!(
            parse("45.5", "JPY"),
            Err(ParseError::TooPrecise { .. })
        ));
        for bad in ["", "-", "45.", ".5", "4,500", "1e3", "+4", "4 5"] {
            assert!(
                matches!(parse(bad, "USD"), Err(ParseError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse("99999999999999999999", "USD"),
            Err(ParseError::TooLarge(_))
        ));
        for n in [0, 1, 99, 4500, 123_456_789] {
            for cur in ["USD", "JPY", "BHD", "ZZZ"] {
                assert_eq!(parse(&format(n, cur), cur), Ok(n), "{n} {cur}");
            }
        }
    }

    #[test]
    fn totals_are_per_currency() {
        let usd = |n| Money {
            currency: "USD".into(),
            minor_units: n,
        };
        let jpy = Money {
            currency: "JPY".into(),
            minor_units: 300,
        };
        assert_eq!(total([&usd(1000), &jpy, &usd(250)]), "12.50 USD + 300 JPY");
        assert_eq!(total([]), "0");
    }
}
