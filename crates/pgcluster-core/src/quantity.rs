//! Kubernetes resource quantities (`250m`, `512Mi`, `1.5Gi`, `1e3`), parsed
//! exactly so that requests and limits compare correctly across suffixes.
//!
//! Grammar (from k8s.io/apimachinery `resource.Quantity`):
//! `<signedNumber><suffix>` with suffix one of the binary SI suffixes
//! `Ki Mi Gi Ti Pi Ei`, the decimal SI suffixes `n u m "" k M G T P E`, or a
//! decimal exponent `e<int>` / `E<int>`. Negative quantities are refused: no
//! pgcluster field takes one.

use std::cmp::Ordering;
use std::fmt;

/// Nanos per unit: the smallest amount Kubernetes represents is `1n`.
const NANOS: u128 = 1_000_000_000;

/// A non-negative quantity, held exactly in billionths of a unit (rounded up,
/// as Kubernetes does, when finer than that).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: u128,
}

/// Why a string is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Nothing to parse.
    #[error("must not be empty")]
    Empty,
    /// No digits where the number should be.
    #[error("must start with a number, e.g. `512Mi`, `2Gi` or `250m`")]
    NoNumber,
    /// A suffix Kubernetes does not know.
    #[error(
        "unknown suffix `{suffix}`; use Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024), m, k, M, G, T, P, E (powers of 1000) or an exponent like e3"
    )]
    UnknownSuffix {
        /// the suffix as written
        suffix: String,
    },
    /// A leading `-`.
    #[error("must not be negative")]
    Negative,
    /// Too large to represent.
    #[error("is too large")]
    Overflow,
}

impl Quantity {
    /// Parses a Kubernetes quantity.
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        let s = input;
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let (negative, s) = match s.as_bytes()[0] {
            b'+' => (false, &s[1..]),
            b'-' => (true, &s[1..]),
            _ => (false, s),
        };
        let num_len = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(num_len);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(QuantityError::NoNumber);
        }
        // mantissa = all digits as one integer; value = mantissa * 10^-frac_len * multiplier
        let mut mantissa: u128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(b - b'0')))
                .ok_or(QuantityError::Overflow)?;
        }
        let frac_len = i32::try_from(frac_part.len()).map_err(|_| QuantityError::Overflow)?;
        // The multiplier as (binary factor, decimal exponent).
        let (binary, exp10): (u128, i32) = match suffix {
            "Ki" => (1 << 10, 0),
            "Mi" => (1 << 20, 0),
            "Gi" => (1 << 30, 0),
            "Ti" => (1 << 40, 0),
            "Pi" => (1 << 50, 0),
            "Ei" => (1 << 60, 0),
            "n" => (1, -9),
            "u" => (1, -6),
            "m" => (1, -3),
            "" => (1, 0),
            "k" => (1, 3),
            "M" => (1, 6),
            "G" => (1, 9),
            "T" => (1, 12),
            "P" => (1, 15),
            "E" => (1, 18),
            other => match parse_exponent(other) {
                Some(e) => (1, e),
                None => {
                    return Err(QuantityError::UnknownSuffix {
                        suffix: other.to_owned(),
                    });
                }
            },
        };
        if negative && mantissa != 0 {
            return Err(QuantityError::Negative);
        }
        // nanos = mantissa * binary * 10^(exp10 + 9 - frac_len), rounded up.
        let scaled = mantissa
            .checked_mul(binary)
            .ok_or(QuantityError::Overflow)?;
        let shift = exp10 + 9 - frac_len;
        let nanos = if shift >= 0 {
            let factor = 10u128
                .checked_pow(u32::try_from(shift).map_err(|_| QuantityError::Overflow)?)
                .ok_or(QuantityError::Overflow)?;
            scaled.checked_mul(factor).ok_or(QuantityError::Overflow)?
        } else {
            match 10u128.checked_pow(shift.unsigned_abs()) {
                Some(divisor) => scaled.div_ceil(divisor),
                // Dividing by more than u128 can hold: anything non-zero rounds up to 1n.
                None => u128::from(scaled > 0),
            }
        };
        Ok(Self { nanos })
    }

    /// Zero.
    pub const ZERO: Self = Self { nanos: 0 };

    /// The amount in whole units, rounded up (bytes for memory and storage).
    pub fn ceil_units(&self) -> u128 {
        self.nanos.div_ceil(NANOS)
    }

    /// The amount in thousandths of a unit, rounded up (millicores for CPU).
    pub fn ceil_millis(&self) -> u128 {
        self.nanos.div_ceil(1_000_000)
    }

    /// The amount in whole units as `u64`, saturating (bytes of storage or lag).
    pub fn to_u64_saturating(&self) -> u64 {
        u64::try_from(self.ceil_units()).unwrap_or(u64::MAX)
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Compares two quantities.
    pub fn compare(&self, other: &Self) -> Ordering {
        self.cmp(other)
    }
}

/// `e3`, `E-2`, `e+4`: a decimal exponent (bounded so the arithmetic stays in range).
fn parse_exponent(s: &str) -> Option<i32> {
    let rest = s.strip_prefix(['e', 'E'])?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

impl fmt::Display for Quantity {
    /// Shows whole units when exact, else milli-units (`1500m`), else nano-units.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos.is_multiple_of(NANOS) {
            write!(f, "{}", self.nanos / NANOS)
        } else if self.nanos.is_multiple_of(1_000_000) {
            write!(f, "{}m", self.nanos / 1_000_000)
        } else {
            write!(f, "{}n", self.nanos)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).expect("test input is a valid quantity")
    }

    /// Suffixes scale as Kubernetes defines them.
    #[test]
    fn suffixes() {
        assert_eq!(q("512Mi").ceil_units(), 512 * 1024 * 1024);
        assert_eq!(q("1Gi").ceil_units(), 1 << 30);
        assert_eq!(q("1.5Gi").ceil_units(), 3 << 29);
        assert_eq!(q("250m").ceil_millis(), 250);
        assert_eq!(q("2").ceil_millis(), 2000);
        assert_eq!(q("1k").ceil_units(), 1000);
        assert_eq!(q("1e3").ceil_units(), 1000);
        assert_eq!(q("1E-3").ceil_millis(), 1);
        assert_eq!(q(".5").ceil_millis(), 500);
        assert_eq!(q("1.").ceil_units(), 1);
        assert_eq!(q("+1").ceil_units(), 1);
        assert_eq!(q("-0"), Quantity::ZERO);
        assert_eq!(q("0.1n"), q("1n"));
    }

    /// Ordering works across suffixes.
    #[test]
    fn ordering() {
        assert!(q("512Mi") < q("1Gi"));
        assert!(q("1000M") < q("1Gi"));
        assert!(q("1G") < q("1Gi"));
        assert!(q("500m") < q("1"));
        assert_eq!(q("1024Ki"), q("1Mi"));
    }

    /// Malformed quantities are refused with the reason.
    #[test]
    fn malformed() {
        assert_eq!(Quantity::parse(""), Err(QuantityError::Empty));
        assert_eq!(Quantity::parse("Gi"), Err(QuantityError::NoNumber));
        assert_eq!(Quantity::parse("."), Err(QuantityError::NoNumber));
        assert_eq!(Quantity::parse("-1Gi"), Err(QuantityError::Negative));
        assert!(matches!(
            Quantity::parse("10GB"),
            Err(QuantityError::UnknownSuffix { .. })
        ));
        assert!(matches!(
            Quantity::parse("10 Gi"),
            Err(QuantityError::UnknownSuffix { .. })
        ));
        assert!(matches!(
            Quantity::parse("1.2.3"),
            Err(QuantityError::NoNumber)
        ));
        assert_eq!(
            Quantity::parse("99999999999999999999Ei"),
            Err(QuantityError::Overflow)
        );
    }

    proptest! {
        /// Arbitrary input never panics the parser.
        #[test]
        fn never_panics(s in "[-+.0-9eEkKMGTPimnu ]{0,12}|\\PC{0,8}") {
            let _ = Quantity::parse(&s);
        }

        /// `<n>Mi` is exactly n * 2^20 units.
        #[test]
        fn binary_exact(n in 0u64..1_000_000) {
            prop_assert_eq!(q(&format!("{n}Mi")).ceil_units(), u128::from(n) << 20);
        }
    }
}
