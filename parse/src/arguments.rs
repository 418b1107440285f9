//! The command line's values that are parsed by hand: `--memory-limit`
//! sizes, `--date`/`--from`/`--to` days and `--as-of` points in a table's
//! history. Each returns a message for the user on bad input; the caller
//! adds the flag's name and the exit code.

use chrono::{DateTime, NaiveDate, Utc};

/// Bytes from a size such as `512MiB`, `2GiB`, `1.5G` or `1000000`
/// (binary units, K/M/G/T with or without `iB`; a bare number is bytes).
pub fn size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("not a size: {text:?} (say 512MiB, 2GiB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit {other:?} in {text:?} (say 512MiB, 2GiB)")),
    };
    let bytes = number * scale;
    if bytes < 64.0 * 1024.0 * 1024.0 {
        return Err(format!("{text} is less than 64MiB, too little to run a load in"));
    }
    Ok(bytes as usize)
}

/// A day as `YYYY-MM-DD`, or `today` / `yesterday` (relative to `today`,
/// the caller's clock in UTC).
pub fn date(text: &str, today: NaiveDate) -> Result<NaiveDate, String> {
    match text {
        "today" => Ok(today),
        "yesterday" => today.pred_opt().ok_or_else(|| "there is no day before today".to_string()),
        _ => crate::values::ymd(text)
            .ok_or_else(|| format!("{text:?} is not a date YYYY-MM-DD (nor `today` or `yesterday`)")),
    }
}

/// A point in a table's history, as given to `--as-of`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsOf {
    Version(i64),
    Time(DateTime<Utc>),
}

impl AsOf {
    /// A version number or an RFC 3339 timestamp.
    pub fn parse(text: &str) -> Result<AsOf, String> {
        if let Ok(version) = text.parse::<i64>() {
            return Ok(AsOf::Version(version));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|t| AsOf::Time(t.with_timezone(&Utc)))
            .map_err(|_| format!("{text:?} is neither a version number nor an RFC 3339 timestamp"))
    }
}

impl std::fmt::Display for AsOf {
    /// The text [`AsOf::parse`] reads back as the same point.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsOf::Version(version) => write!(f, "{version}"),
            AsOf::Time(time) => write!(f, "{}", time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units_and_small_ones_are_refused() {
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("512MiB"), Ok(512 << 20));
        assert_eq!(size("2g"), Ok(2 << 30));
        assert_eq!(size("1.5G"), Ok(3 << 29));
        assert_eq!(size("134217728"), Ok(128 << 20));
        assert!(size("63MiB").is_err(), "just below the floor");
        assert_eq!(size("64MiB"), Ok(64 << 20), "the floor itself");
        assert!(size("1 GB of memory").is_err());
        assert!(size("lots").is_err());
    }

    #[test]
    fn dates_are_days_or_today_or_yesterday() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        assert_eq!(date("2019-04-01", today), Ok(NaiveDate::from_ymd_opt(2019, 4, 1).unwrap()));
        assert_eq!(date("today", today), Ok(today));
        assert_eq!(date("yesterday", today), Ok(NaiveDate::from_ymd_opt(2026, 12, 5).unwrap()));
        assert!(date("2019-02-29", today).is_err());
        assert!(date("tomorrow", today).is_err());
        assert!(date("2019-4-1", today).is_err(), "exactly YYYY-MM-DD");
        assert_eq!(date("yesterday", NaiveDate::MIN).unwrap_err(), "there is no day before today");
    }

    #[test]
    fn as_of_is_a_version_or_a_time_and_prints_back() {
        assert_eq!(AsOf::parse("3"), Ok(AsOf::Version(3)));
        let time = AsOf::parse("2019-04-01T12:00:00+02:00").unwrap();
        assert_eq!(time.to_string(), "2019-04-01T10:00:00Z");
        assert_eq!(AsOf::parse(&time.to_string()), Ok(time));
        assert!(AsOf::parse("yesterday").is_err());
    }
}
