//! Contract versions: validating the API message and turning it into the
//! domain's [`Terms`]. Errors name the field (`contract.rate_card[3].price_per_call: ...`).

use chrono::NaiveDate;
use wardline_proto::billing::{
    BillingTier, BusinessHours, Contract, DayOfWeek, RoundingRule, TierPrice,
};
use wardline_proto::common::{Money, Priority};

use crate::domain::calendar::{Week, parse_date, parse_hhmm};
use crate::domain::money::Rounding;
use crate::domain::rating::Terms;
use crate::limits;

fn money(
    m: &Option<Money>,
    currency: &str,
    field: &str,
    allow_unset: bool,
) -> Result<Option<i64>, String> {
    match m {
        None if allow_unset => Ok(None),
        None => Err(format!("{field}: required")),
        Some(m) => {
            if m.currency != currency {
                return Err(format!(
                    "{field}.currency: must be the contract's currency {currency}"
                ));
            }
            if m.minor_units < 0 {
                return Err(format!("{field}.minor_units: must not be negative"));
            }
            if m.minor_units > limits::MONEY_MINOR_UNITS {
                return Err(format!(
                    "{field}.minor_units: at most {}",
                    limits::MONEY_MINOR_UNITS
                ));
            }
            Ok(Some(m.minor_units))
        }
    }
}

/// Rounding rule of the API.
pub fn rounding(r: RoundingRule) -> Option<Rounding> {
    Some(match r {
        RoundingRule::HalfUp => Rounding::HalfUp,
        RoundingRule::HalfEven => Rounding::HalfEven,
        RoundingRule::Down => Rounding::Down,
        RoundingRule::Up => Rounding::Up,
        RoundingRule::Unspecified => return None,
    })
}

/// Validates a contract version's terms (output-only fields ignored) and
/// returns them; `version` and `effective_from` come from the caller.
pub fn terms_from_proto(c: &Contract, version: u32) -> Result<Terms, String> {
    let currency = c.currency.clone();
    if currency.len() != 3 || !currency.chars().all(|ch| ch.is_ascii_uppercase()) {
        return Err("contract.currency: an ISO 4217 code such as USD".into());
    }
    let effective_from =
        parse_date(&c.effective_from).ok_or("contract.effective_from: a date YYYY-MM-DD")?;
    let rate_card = rate_card_from_proto(&c.rate_card, &currency)?;
    if c.after_hours_surcharge_bps > limits::SURCHARGE_BPS {
        return Err(format!(
            "contract.after_hours_surcharge_bps: at most {} (1000 %)",
            limits::SURCHARGE_BPS
        ));
    }
    let week = week_from_proto(&c.business_hours)?;
    let holidays = holidays_from_proto(&c.holidays)?;
    let credits = c.sla_credits.clone().unwrap_or_default();
    if credits.cap_bps > limits::CREDIT_CAP_BPS {
        return Err(format!(
            "contract.sla_credits.cap_bps: 0-{}",
            limits::CREDIT_CAP_BPS
        ));
    }
    let rounding =
        rounding(RoundingRule::try_from(c.rounding).unwrap_or(RoundingRule::Unspecified))
            .ok_or("contract.rounding: HALF_UP, HALF_EVEN, DOWN or UP")?;
    Ok(Terms {
        version,
        effective_from,
        currency: currency.clone(),
        rate_card,
        surcharge_bps: c.after_hours_surcharge_bps,
        week,
        holidays,
        included_per_month: c.calls_included_per_month,
        overage_price: money(
            &c.overage_price_per_call,
            &currency,
            "contract.overage_price_per_call",
            true,
        )?,
        monthly_minimum: money(
            &c.monthly_minimum,
            &currency,
            "contract.monthly_minimum",
            true,
        )?,
        credit_p1_response: money(
            &credits.per_p1_response_breach,
            &currency,
            "contract.sla_credits.per_p1_response_breach",
            true,
        )?
        .unwrap_or(0),
        credit_p2_response: money(
            &credits.per_p2_response_breach,
            &currency,
            "contract.sla_credits.per_p2_response_breach",
            true,
        )?
        .unwrap_or(0),
        credit_cap_bps: credits.cap_bps,
        rounding,
    })
}

/// The rate card: a price in the contract's currency for every tier x
/// priority (8 prices), each given once.
fn rate_card_from_proto(prices: &[TierPrice], currency: &str) -> Result<[[i64; 4]; 2], String> {
    let mut rate_card = [[-1i64; 4]; 2];
    for (i, tp) in prices.iter().enumerate() {
        let field = format!("contract.rate_card[{i}]");
        let tier = match BillingTier::try_from(tp.tier) {
            Ok(BillingTier::Clinical) => 0,
            Ok(BillingTier::Technical) => 1,
            _ => return Err(format!("{field}.tier: CLINICAL or TECHNICAL")),
        };
        let p = match Priority::try_from(tp.priority) {
            Ok(p) if p != Priority::Unspecified => p as usize - 1,
            _ => return Err(format!("{field}.priority: P1-P4")),
        };
        if rate_card[tier][p] >= 0 {
            return Err(format!("{field}: tier and priority given twice"));
        }
        rate_card[tier][p] = money(
            &tp.price_per_call,
            currency,
            &format!("{field}.price_per_call"),
            false,
        )?
        .unwrap_or(0);
    }
    if rate_card.iter().flatten().any(|p| *p < 0) {
        return Err("contract.rate_card: every tier x priority (8 prices) is required".into());
    }
    Ok(rate_card)
}

/// Business hours: at most one opening per day, closing after it opens.
fn week_from_proto(hours: &[BusinessHours]) -> Result<Week, String> {
    let mut week: Week = [None; 7];
    for (i, h) in hours.iter().enumerate() {
        let field = format!("contract.business_hours[{i}]");
        let day = match DayOfWeek::try_from(h.day) {
            Ok(d) if d != DayOfWeek::Unspecified => d as usize - 1,
            _ => return Err(format!("{field}.day: MONDAY-SUNDAY")),
        };
        if week[day].is_some() {
            return Err(format!("{field}.day: given twice"));
        }
        let open = parse_hhmm(&h.open, false).ok_or_else(|| format!("{field}.open: HH:MM"))?;
        let close =
            parse_hhmm(&h.close, true).ok_or_else(|| format!("{field}.close: HH:MM or 24:00"))?;
        if close <= open {
            return Err(format!("{field}.close: must be after open"));
        }
        week[day] = Some((open, close));
    }
    Ok(week)
}

/// Holidays: at most [`limits::HOLIDAYS`] dates.
fn holidays_from_proto(dates: &[String]) -> Result<Vec<NaiveDate>, String> {
    if dates.len() > limits::HOLIDAYS {
        return Err(format!("contract.holidays: at most {}", limits::HOLIDAYS));
    }
    dates
        .iter()
        .enumerate()
        .map(|(i, d)| {
            parse_date(d).ok_or_else(|| format!("contract.holidays[{i}]: a date YYYY-MM-DD"))
        })
        .collect()
}

/// A complete, valid contract for tests and the demo: clinical P1..P4
/// 45/35/25/20, technical 30/25/15/10 (in major units of `currency`),
/// weekdays 08:00-17:00, 25 % after hours.
pub fn example(currency: &str, effective_from: &str) -> Contract {
    let m = |minor: i64| {
        Some(Money {
            currency: currency.into(),
            minor_units: minor,
        })
    };
    let prices = [[4500, 3500, 2500, 2000], [3000, 2500, 1500, 1000]];
    let mut rate_card = Vec::new();
    for (t, tier) in [BillingTier::Clinical, BillingTier::Technical]
        .into_iter()
        .enumerate()
    {
        for (p, priority) in [Priority::P1, Priority::P2, Priority::P3, Priority::P4]
            .into_iter()
            .enumerate()
        {
            rate_card.push(TierPrice {
                tier: tier as i32,
                priority: priority as i32,
                price_per_call: m(prices[t][p]),
            });
        }
    }
    Contract {
        effective_from: effective_from.into(),
        currency: currency.into(),
        rate_card,
        after_hours_surcharge_bps: 2500,
        business_hours: (1..=5)
            .map(|d| BusinessHours {
                day: d,
                open: "08:00".into(),
                close: "17:00".into(),
            })
            .collect(),
        rounding: RoundingRule::HalfUp as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_valid() {
        let t = terms_from_proto(&example("USD", "2026-01-01"), 1).unwrap();
        assert_eq!(t.rate_card[0][0], 4500);
        assert_eq!(t.week[0], Some((480, 1020)));
        assert_eq!(t.week[5], None);
    }

    #[test]
    fn errors_name_the_field() {
        type Mutate = Box<dyn Fn(&mut Contract)>;
        let cases: Vec<(&str, Mutate)> = vec![
            ("contract.currency", Box::new(|c| c.currency = "usd".into())),
            (
                "contract.effective_from",
                Box::new(|c| c.effective_from = "2026-02-30".into()),
            ),
            (
                "contract.rate_card",
                Box::new(|c| {
                    c.rate_card.pop();
                }),
            ),
            (
                "contract.rate_card[1]",
                Box::new(|c| c.rate_card[1].priority = 1),
            ),
            (
                "contract.rate_card[0].price_per_call.currency",
                Box::new(|c| {
                    c.rate_card[0].price_per_call.as_mut().unwrap().currency = "EUR".into()
                }),
            ),
            (
                "contract.rate_card[0].price_per_call.minor_units",
                Box::new(|c| c.rate_card[0].price_per_call.as_mut().unwrap().minor_units = -1),
            ),
            (
                "contract.business_hours[0].close",
                Box::new(|c| c.business_hours[0].close = "07:00".into()),
            ),
            (
                "contract.business_hours[1].day",
                Box::new(|c| c.business_hours[1].day = 1),
            ),
            (
                "contract.holidays[0]",
                Box::new(|c| c.holidays = vec!["tomorrow".into()]),
            ),
            ("contract.rounding", Box::new(|c| c.rounding = 0)),
        ];
        for (field, mutate) in cases {
            let mut c = example("USD", "2026-01-01");
            mutate(&mut c);
            let e = terms_from_proto(&c, 1).unwrap_err();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }
}
