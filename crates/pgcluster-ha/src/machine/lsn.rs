//! Write-ahead log positions: the one `Lsn` of the machine and the
//! PostgreSQL driver, parsed and printed as PostgreSQL does (`0/3000148`).

use std::fmt;
use std::str::FromStr;

/// A WAL position (log sequence number): a byte offset into the WAL stream.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Lsn(pub u64);

/// A string that is not an LSN in PostgreSQL's `X/Y` hexadecimal form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "failed to parse `{0}` as an LSN: expected two hexadecimal numbers separated by '/', like 0/3000148"
)]
pub struct ParseLsnError(pub String);

impl Lsn {
    /// Bytes from `older` to `self`, zero when `older` is ahead.
    pub fn bytes_since(self, older: Lsn) -> u64 {
        self.0.saturating_sub(older.0)
    }
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError(s.to_owned());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let valid = |part: &str| {
            !part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_hexdigit())
        };
        if !valid(hi) || !valid(lo) {
            return Err(err());
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((hi << 32) | lo))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsing and printing agree with PostgreSQL's notation.
    #[test]
    fn round_trips_postgres_notation() {
        for text in ["0/0", "0/3000148", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            let lsn: Lsn = text.parse().expect("valid LSN");
            assert_eq!(lsn.to_string(), text);
        }
        assert_eq!("0/3000148".parse::<Lsn>(), Ok(Lsn(0x3000148)));
        assert_eq!("1/0".parse::<Lsn>(), Ok(Lsn(1 << 32)));
        assert_eq!("0/a".parse::<Lsn>(), Ok(Lsn(10)));
    }

    /// Malformed input is an error, never a panic or a wrong value.
    #[test]
    fn rejects_malformed() {
        for text in [
            "",
            "/",
            "0/",
            "/1",
            "0x1/2",
            "1/2/3",
            "123456789/0",
            "g/0",
            "-1/0",
            "0/ 1",
        ] {
            assert!(text.parse::<Lsn>().is_err(), "{text:?} should not parse");
        }
    }

    /// Lag never underflows.
    #[test]
    fn bytes_since_saturates() {
        assert_eq!(Lsn(100).bytes_since(Lsn(40)), 60);
        assert_eq!(Lsn(40).bytes_since(Lsn(100)), 0);
    }
}
