//! Go-style durations (`500ms`, `2s`, `1m30s`, `1.5h`) as Kubernetes users
//! write them, parsed into [`std::time::Duration`] and formatted back.

use std::time::Duration;

/// Why a string is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("must not be empty")]
    Empty,
    /// A leading `-`.
    #[error("must not be negative")]
    Negative,
    /// A number without a unit (other than `0`).
    #[error("number {number} has no unit; add one of ns, us, ms, s, m, h (e.g. `{number}s`)")]
    MissingUnit {
        /// the number as written
        number: String,
    },
    /// A unit this parser does not know.
    #[error("unknown unit `{unit}`; use ns, us, ms, s, m or h")]
    UnknownUnit {
        /// the unit as written
        unit: String,
    },
    /// Something that is neither a number nor a unit.
    #[error("expected a number at `{rest}`")]
    ExpectedNumber {
        /// the unparsed remainder
        rest: String,
    },
    /// Larger than `Duration` can hold.
    #[error("is too large")]
    Overflow,
}

/// Nanoseconds per unit, longest unit names first so `ms` wins over `m`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go-style duration: one or more `<number><unit>` pairs, where the
/// number may have a fraction; `0` alone needs no unit. Fractions finer than a
/// nanosecond are truncated.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let s = match s.strip_prefix('+') {
        Some(rest) => rest,
        None if s.starts_with('-') => return Err(DurationError::Negative),
        None => s,
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(DurationError::ExpectedNumber {
                rest: rest.to_owned(),
            });
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                number: number.to_owned(),
            });
        }
        let Some(&(_, per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit {
                unit: unit.to_owned(),
            });
        };
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| DurationError::Overflow)?
        };
        let mut nanos = int.checked_mul(per_unit).ok_or(DurationError::Overflow)?;
        // Fraction: digits beyond nanosecond precision of the unit are truncated.
        let mut scale = per_unit;
        for digit in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos = nanos
                .checked_add(u128::from(digit - b'0') * scale)
                .ok_or(DurationError::Overflow)?;
        }
        total = total.checked_add(nanos).ok_or(DurationError::Overflow)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    let sub = u32::try_from(total % 1_000_000_000).expect("a remainder of 1e9 fits in u32");
    Ok(Duration::new(secs, sub))
}

/// Formats a duration the way [`parse_duration`] reads it back: whole seconds as
/// `Ns`, whole milliseconds as `Nms`, else `Nns`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        "0s".to_owned()
    } else if nanos.is_multiple_of(1_000_000_000) {
        format!("{}s", nanos / 1_000_000_000)
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", nanos / 1_000_000)
    } else {
        format!("{nanos}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The forms users write parse to the durations they mean.
    #[test]
    fn common_forms() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1.5h"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
    }

    /// Malformed durations are refused with the reason.
    #[test]
    fn malformed() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("-1s"), Err(DurationError::Negative));
        assert!(matches!(
            parse_duration("30"),
            Err(DurationError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse_duration("3d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::ExpectedNumber { .. })
        ));
        assert!(matches!(
            parse_duration("1..2s"),
            Err(DurationError::ExpectedNumber { .. })
        ));
        assert_eq!(
            parse_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow)
        );
    }

    proptest! {
        /// format then parse is the identity.
        #[test]
        fn format_round_trips(nanos in 0u64..u64::MAX / 2) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        /// Arbitrary input never panics the parser.
        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse_duration(&s);
        }
    }
}
