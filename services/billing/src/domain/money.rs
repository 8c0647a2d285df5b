//! Integer money arithmetic with an explicit rounding rule.
//!
//! Amounts are `i64` minor units (cents). The only division is a share in
//! basis points, and it is rounded exactly once per computed amount by the
//! contract's rule. Intermediate products are `i128`, so no amount a
//! hospital can be billed overflows.

/// How a fraction of a minor unit becomes a whole one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// To nearest, halves away from zero.
    HalfUp,
    /// To nearest, halves to even (banker's).
    HalfEven,
    /// Towards zero.
    Down,
    /// Away from zero.
    Up,
}

/// `numerator / denominator` rounded by `rule`. `denominator` must be > 0.
pub fn div_round(numerator: i128, denominator: i128, rule: Rounding) -> i128 {
    debug_assert!(denominator > 0);
    let q = numerator / denominator; // truncates towards zero
    let r = numerator % denominator;
    if r == 0 {
        return q;
    }
    let away = if numerator < 0 { q - 1 } else { q + 1 };
    let twice = 2 * r.abs();
    match rule {
        Rounding::Down => q,
        Rounding::Up => away,
        Rounding::HalfUp => {
            if twice >= denominator {
                away
            } else {
                q
            }
        }
        Rounding::HalfEven => match twice.cmp(&denominator) {
            std::cmp::Ordering::Greater => away,
            std::cmp::Ordering::Less => q,
            std::cmp::Ordering::Equal => {
                if q % 2 == 0 {
                    q
                } else {
                    away
                }
            }
        },
    }
}

/// `bps` basis points of `amount`, rounded once.
pub fn share_bps(amount: i64, bps: u32, rule: Rounding) -> i64 {
    div_round(i128::from(amount) * i128::from(bps), 10_000, rule) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rounding_table() {
        // (numerator, denominator) -> (half_up, half_even, down, up)
        let cases = [
            (25, 10, (3, 2, 2, 3)),
            (35, 10, (4, 4, 3, 4)),
            (24, 10, (2, 2, 2, 3)),
            (26, 10, (3, 3, 2, 3)),
            (-25, 10, (-3, -2, -2, -3)),
            (-26, 10, (-3, -3, -2, -3)),
            (20, 10, (2, 2, 2, 2)),
            (0, 10, (0, 0, 0, 0)),
        ];
        for (n, d, (hu, he, dn, up)) in cases {
            assert_eq!(div_round(n, d, Rounding::HalfUp), hu, "{n}/{d} half up");
            assert_eq!(div_round(n, d, Rounding::HalfEven), he, "{n}/{d} half even");
            assert_eq!(div_round(n, d, Rounding::Down), dn, "{n}/{d} down");
            assert_eq!(div_round(n, d, Rounding::Up), up, "{n}/{d} up");
        }
    }

    #[test]
    fn shares() {
        assert_eq!(share_bps(4_500, 2_500, Rounding::HalfUp), 1_125); // 25 % of $45.00
        assert_eq!(share_bps(3_333, 1_500, Rounding::HalfUp), 500); // 499.95 -> 500
        assert_eq!(share_bps(3_333, 1_500, Rounding::Down), 499);
        assert_eq!(share_bps(10, 5_000, Rounding::HalfEven), 5);
        assert_eq!(share_bps(5, 5_000, Rounding::HalfEven), 2); // 2.5 -> 2
        assert_eq!(share_bps(7, 5_000, Rounding::HalfEven), 4); // 3.5 -> 4
    }

    proptest! {
        #[test]
        fn rounded_is_within_one_unit_of_exact(n in -10_000_000_000i128..10_000_000_000, d in 1i128..100_000) {
            for rule in [Rounding::HalfUp, Rounding::HalfEven, Rounding::Down, Rounding::Up] {
                let r = div_round(n, d, rule);
                // |r*d - n| < d
                prop_assert!((r * d - n).abs() < d);
            }
            prop_assert!(div_round(n, d, Rounding::Down).abs() <= div_round(n, d, Rounding::Up).abs());
        }
    }
}
