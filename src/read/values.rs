//! Turns one field's text into a typed value, by the column's kind
//! (table.toml). Each function returns `Ok(None)` for an empty field
//! (missing) and `Err(reason)` for text that breaks the rule, which rejects
//! the line.

use chrono::NaiveDate;

pub type Parsed<T> = Result<Option<T>, String>;

/// Booleans as the exporter writes them (`True`/`False`), in any case, or `1`/`0`.
pub fn flag(text: &str) -> Parsed<bool> {
    match text {
        "" => Ok(None),
        "True" => Ok(Some(true)),
        "False" => Ok(Some(false)),
        "1" => Ok(Some(true)),
        "0" => Ok(Some(false)),
        t if t.eq_ignore_ascii_case("true") => Ok(Some(true)),
        t if t.eq_ignore_ascii_case("false") => Ok(Some(false)),
        t => Err(format!("{} is not a boolean", quoted(t))),
    }
}

/// An integer, or a float with a zero fraction (`17.0`): pandas writes
/// counts as floats once a column has a missing value.
pub fn count(text: &str) -> Parsed<i64> {
    if text.is_empty() {
        return Ok(None);
    }
    integer(text).map(Some).ok_or_else(|| format!("{} is not an integer", quoted(text)))
}

fn integer(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    // A float with a zero fraction: drop ".0…".
    let whole = match memchr::memchr(b'.', bytes) {
        Some(dot) if dot + 1 < bytes.len() && bytes[dot + 1..].iter().all(|&b| b == b'0') => &bytes[..dot],
        Some(_) => return None,
        None => bytes,
    };
    let (negative, digits) = match whole.first() {
        Some(b'-') => (true, &whole[1..]),
        Some(b'+') => (false, &whole[1..]),
        _ => (false, whole),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(b - b'0');
        value = value.checked_mul(10)?;
        value = if negative { value.checked_sub(digit)? } else { value.checked_add(digit)? };
    }
    Some(value)
}

/// A bracketed list of integers: `[0, 4, 7]`, `[]`.
pub fn count_list(text: &str) -> Parsed<Vec<i64>> {
    let mut items = Vec::new();
    Ok(count_list_into(text, &mut items)?.then_some(items))
}

/// Like [`count_list`], into a reused buffer; `Ok(false)` for an empty field.
pub fn count_list_into(text: &str, items: &mut Vec<i64>) -> Result<bool, String> {
    items.clear();
    if text.is_empty() {
        return Ok(false);
    }
    let bad = || format!("{} is not a list of integers like [0, 4, 7]", quoted(text));
    let inner = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).ok_or_else(bad)?;
    if inner.trim_ascii().is_empty() {
        return Ok(true);
    }
    for item in inner.split(',') {
        items.push(integer(item.trim_ascii()).ok_or_else(bad)?);
    }
    Ok(true)
}

/// The date of the file being loaded, with its text, for a fast comparison.
pub struct FileDate {
    date: NaiveDate,
    text: String,
}

impl FileDate {
    pub fn new(date: NaiveDate) -> Self {
        FileDate { date, text: date.format("%Y-%m-%d").to_string() }
    }

    /// A `YYYY-MM-DD` date, which must be this date.
    pub fn parse(&self, text: &str) -> Parsed<NaiveDate> {
        if text == self.text {
            return Ok(Some(self.date));
        }
        file_date(text, self.date)
    }
}

/// A `YYYY-MM-DD` date, which must be the date of the file being loaded.
pub fn file_date(text: &str, expected: NaiveDate) -> Parsed<NaiveDate> {
    if text.is_empty() {
        return Ok(None);
    }
    let date = (text.len() == 10)
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| format!("{} is not a date YYYY-MM-DD", quoted(text)))?;
    if date != expected {
        return Err(format!("export_date {date} is not the file's date {expected}"));
    }
    Ok(Some(date))
}

/// Text as read; empty means missing.
pub fn text(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// A value quoted for a reject reason, cut short so one wild field cannot
/// make the reason unreadable.
fn quoted(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("'{}…'", &text[..cut]),
        None => format!("'{text}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        for (text, want) in
            [("True", true), ("FALSE", false), ("true", true), ("false", false), ("1", true), ("0", false)]
        {
            assert_eq!(flag(text), Ok(Some(want)), "{text}");
        }
        assert_eq!(flag(""), Ok(None));
        for bad in ["yes", "T", " True", "2", "nan", "None"] {
            assert!(flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts() {
        assert_eq!(count("17"), Ok(Some(17)));
        assert_eq!(count("17.0"), Ok(Some(17)));
        assert_eq!(count("17.000"), Ok(Some(17)));
        assert_eq!(count("-3"), Ok(Some(-3)));
        assert_eq!(count(""), Ok(None));
        for bad in ["17.5", "17.", ".0", "1e3", "abc", " 1", "9223372036854775808", "0x10", "-"] {
            assert!(count(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists() {
        assert_eq!(count_list("[0, 4, 7]"), Ok(Some(vec![0, 4, 7])));
        assert_eq!(count_list("[0]"), Ok(Some(vec![0])));
        assert_eq!(count_list("[]"), Ok(Some(vec![])));
        assert_eq!(count_list("[ ]"), Ok(Some(vec![])));
        assert_eq!(count_list("[1,2]"), Ok(Some(vec![1, 2])));
        assert_eq!(count_list(""), Ok(None));
        for bad in ["0, 4", "[0, 4", "[a]", "[1,,2]", "[1.5]", "[[1]]", "{1}"] {
            assert!(count_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_must_match_the_file() {
        let day = NaiveDate::from_ymd_opt(2019, 4, 1).unwrap();
        assert_eq!(file_date("2019-04-01", day), Ok(Some(day)));
        assert_eq!(file_date("", day), Ok(None));
        assert!(file_date("2019-04-02", day).unwrap_err().contains("not the file's date"));
        assert!(file_date("2019-4-1", day).is_err());
        assert!(file_date("01/04/2019", day).is_err());
        let fast = FileDate::new(day);
        assert_eq!(fast.parse("2019-04-01"), Ok(Some(day)));
        assert!(fast.parse("2019-04-02").is_err());
        assert_eq!(fast.parse(""), Ok(None));
    }

    #[test]
    fn long_values_are_cut_in_reasons() {
        let reason = flag(&"x".repeat(500)).unwrap_err();
        assert!(reason.len() < 80, "{reason}");
    }
}
