//! Turns one field's text into a typed value, by the column's kind
//! (table.toml; the rules are listed in tables/README.md). Each function returns `Ok(None)` for an empty field
//! (missing) and `Err(reason)` for text that breaks the rule, which rejects
//! the line.

use chrono::NaiveDate;

pub type Parsed<T> = Result<Option<T>, String>;

/// Booleans as the exporter writes them (`True`/`False`), in any case, or `1`/`0`.
pub fn flag(text: &str) -> Parsed<bool> {
    // Compared a word at a time: most columns of a wide export are flags.
    // OR-ing 0x20 into a byte gives a lowercase letter only from that
    // letter in either case, so this is `eq_ignore_ascii_case`.
    const LOWER: u32 = 0x2020_2020;
    let word = |four: &[u8]| u32::from_le_bytes([four[0], four[1], four[2], four[3]]) | LOWER;
    let bytes = text.as_bytes();
    let parsed = match bytes.len() {
        0 => return Ok(None),
        1 if bytes[0] == b'1' => Some(true),
        1 if bytes[0] == b'0' => Some(false),
        4 if word(bytes) == u32::from_le_bytes(*b"true") => Some(true),
        5 if word(bytes) == u32::from_le_bytes(*b"fals") && bytes[4] | 0x20 == b'e' => Some(false),
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| format!("{} is not a boolean", quoted(text)))
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
    let date = ymd(text).ok_or_else(|| format!("{} is not a date YYYY-MM-DD", quoted(text)))?;
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

/// A finite floating-point number (`3.14`, `-0.5`, `1e-3`); `nan` and
/// `inf` are refused: no export means them.
pub fn float(text: &str) -> Parsed<f64> {
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && !text.starts_with(|c: char| c.is_ascii_whitespace()) => Ok(Some(value)),
        _ => Err(format!("{} is not a number", quoted(text))),
    }
}

/// A fixed-point decimal with at most `scale` digits after the point and
/// `precision` digits in all (`12.5` in decimal(10,2) is 1250 hundredths);
/// more decimals than the scale are refused, never rounded.
pub fn decimal(text: &str, precision: u8, scale: i8) -> Parsed<i128> {
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || format!("{} is not a decimal number", quoted(text));
    let (negative, unsigned) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let scale = scale as usize;
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > scale {
        return Err(format!("{} has more than {scale} decimal places", quoted(text)));
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() + scale > precision as usize {
        return Err(format!("{} does not fit decimal({precision},{scale})", quoted(text)));
    }
    let mut value: i128 = 0;
    for b in whole.bytes().chain(fraction.bytes()).chain(std::iter::repeat_n(b'0', scale - fraction.len())) {
        value = value * 10 + i128::from(b - b'0');
    }
    Ok(Some(if negative { -value } else { value }))
}

/// How one column's values are written in the export, when not shoplake's
/// defaults (table.toml's per-column options, e.g. for Shopify's admin
/// exports: `'75008`, `yes`/`no`, `2026-05-01 10:00:00 +0200`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conventions {
    /// Removed from the start of a field that has it (`'`, `gid://shopify/Product/`).
    pub strip_prefix: Option<String>,
    /// Texts that mean missing, besides the empty field (`N/A`).
    pub null_values: Vec<String>,
    /// A flag's spellings (any ASCII case), instead of True/False/1/0.
    pub true_values: Vec<String>,
    pub false_values: Vec<String>,
    /// A timestamp's chrono format, its offset included (`%Y-%m-%d %H:%M:%S %z`).
    pub timestamp_format: Option<String>,
}

impl Conventions {
    /// The text the column's kind reads: empty for a null value, else the
    /// field without its prefix.
    pub fn prepare<'a>(&self, text: &'a str) -> &'a str {
        if self.null_values.iter().any(|null| null == text) {
            return "";
        }
        match &self.strip_prefix {
            Some(prefix) => text.strip_prefix(prefix.as_str()).unwrap_or(text),
            None => text,
        }
    }

    /// A flag, by the declared spellings when there are some.
    pub fn flag(&self, text: &str) -> Parsed<bool> {
        if self.true_values.is_empty() && self.false_values.is_empty() {
            return flag(text);
        }
        let spelled = |spellings: &[String]| spellings.iter().any(|s| s.eq_ignore_ascii_case(text));
        match text {
            "" => Ok(None),
            _ if spelled(&self.true_values) => Ok(Some(true)),
            _ if spelled(&self.false_values) => Ok(Some(false)),
            _ => Err(format!(
                "{} is not a boolean ({} or {})",
                quoted(text),
                self.true_values.join("/"),
                self.false_values.join("/")
            )),
        }
    }

    /// A timestamp, in the declared format when there is one (its offset
    /// says the instant), else as [`timestamp`] reads it.
    pub fn timestamp(&self, text: &str, zone: Option<chrono_tz::Tz>) -> Parsed<i64> {
        match &self.timestamp_format {
            None => timestamp(text, zone),
            Some(_) if text.is_empty() => Ok(None),
            Some(format) => chrono::DateTime::parse_from_str(text, format)
                .map(|instant| Some(instant.timestamp_micros()))
                .map_err(|_| format!("{} is not a timestamp written {format}", quoted(text))),
        }
    }
}

/// A calendar date `YYYY-MM-DD`.
pub fn date_value(text: &str) -> Parsed<NaiveDate> {
    if text.is_empty() {
        return Ok(None);
    }
    ymd(text).map(Some).ok_or_else(|| format!("{} is not a date YYYY-MM-DD", quoted(text)))
}

/// A calendar date written exactly `YYYY-MM-DD`: four digits, two, two. (chrono's
/// `%Y` alone also reads a sign and fewer digits: `-019-04-09` is year -19.)
pub fn ymd(text: &str) -> Option<NaiveDate> {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    shaped.then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()).flatten()
}

/// An instant, as microseconds since 1970 UTC: RFC 3339 with an offset
/// (`2019-04-01T12:30:00Z`, `...+02:00`), or, when the column declares a
/// time zone, `YYYY-MM-DD HH:MM:SS[.ffffff]` (or with `T`) in that zone. A
/// local time that a clock change skips is refused; one it repeats is the
/// earlier instant.
pub fn timestamp(text: &str, zone: Option<chrono_tz::Tz>) -> Parsed<i64> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(instant) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Some(instant.timestamp_micros()));
    }
    let local = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok());
    match (local, zone) {
        (Some(local), Some(zone)) => match local.and_local_timezone(zone) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => Ok(Some(t.timestamp_micros())),
            chrono::LocalResult::None => {
                Err(format!("{} does not exist in {zone} (a clock change skips it)", quoted(text)))
            }
        },
        (Some(_), None) => Err(format!("{} has no UTC offset and the column declares no time_zone", quoted(text))),
        (None, _) => Err(format!("{} is not a timestamp (RFC 3339, or YYYY-MM-DD HH:MM:SS)", quoted(text))),
    }
}

/// A bracketed list of quoted texts, as JSON or Python write them:
/// `["a", "b"]`, `['a', 'b']`, `[]`; `\` escapes the quote and itself.
pub fn text_list_into(text: &str, items: &mut Vec<String>) -> Result<bool, String> {
    items.clear();
    if text.is_empty() {
        return Ok(false);
    }
    let bad = || format!("{} is not a list of quoted texts like [\"a\", \"b\"]", quoted(text));
    let inner = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).ok_or_else(bad)?;
    let mut chars = inner.chars().peekable();
    let mut after_comma = false;
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let Some(quote) = chars.next() else {
            return if after_comma { Err(bad()) } else { Ok(true) };
        };
        if quote != '"' && quote != '\'' {
            return Err(bad());
        }
        let mut item = String::new();
        loop {
            match chars.next() {
                None => return Err(bad()),
                Some('\\') => item.push(chars.next().ok_or_else(bad)?),
                Some(c) if c == quote => break,
                Some(c) => item.push(c),
            }
        }
        items.push(item);
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        match chars.next() {
            None => return Ok(true),
            Some(',') => after_comma = true,
            Some(_) => return Err(bad()),
        }
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
        for bad in ["yes", "T", " True", "2", "nan", "None", "Truee", "Fals", "t\u{e9}e"] {
            assert!(flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_are_spelled_as_eq_ignore_ascii_case_says() {
        let reference = |text: &str| match text {
            "" => Ok(None),
            "1" => Ok(Some(true)),
            "0" => Ok(Some(false)),
            t if t.eq_ignore_ascii_case("true") => Ok(Some(true)),
            t if t.eq_ignore_ascii_case("false") => Ok(Some(false)),
            t => Err(format!("{} is not a boolean", quoted(t))),
        };
        // Every ASCII byte in every position of each spelling (the bytes
        // 0x20 apart from a letter among them).
        for word in ["true", "false", "1", "0", "TRUE", "False"] {
            for at in 0..word.len() {
                for byte in 0u8..128 {
                    let mut text = word.as_bytes().to_vec();
                    text[at] = byte;
                    let text = String::from_utf8(text).unwrap();
                    assert_eq!(flag(&text), reference(&text), "{text:?}");
                }
            }
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
    fn floats() {
        assert_eq!(float("3.25"), Ok(Some(3.25)));
        assert_eq!(float("-0.5"), Ok(Some(-0.5)));
        assert_eq!(float("1e-3"), Ok(Some(0.001)));
        assert_eq!(float("17"), Ok(Some(17.0)));
        assert_eq!(float(""), Ok(None));
        for bad in ["nan", "NaN", "inf", "-infinity", "1,5", "abc", " 1", "1 ", "0x10", "1e999"] {
            assert!(float(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal("12.34", 10, 2), Ok(Some(1234)));
        assert_eq!(decimal("12.5", 10, 2), Ok(Some(1250)));
        assert_eq!(decimal("12", 10, 2), Ok(Some(1200)));
        assert_eq!(decimal("-0.01", 10, 2), Ok(Some(-1)));
        assert_eq!(decimal("+7.100", 10, 2), Ok(Some(710)), "trailing zeros are not decimals");
        assert_eq!(decimal(".5", 10, 2), Ok(Some(50)));
        assert_eq!(decimal("99999999.99", 10, 2), Ok(Some(9_999_999_999)));
        assert_eq!(decimal("", 10, 2), Ok(None));
        assert!(decimal("1.234", 10, 2).unwrap_err().contains("more than 2 decimal places"), "never rounded");
        assert!(decimal("100000000", 10, 2).unwrap_err().contains("does not fit"));
        for bad in ["1e3", "1.2.3", "-", ".", "12,50", "$5", " 1", "1 "] {
            assert!(decimal(bad, 10, 2).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_dates() {
        let day = NaiveDate::from_ymd_opt(2019, 2, 28).unwrap();
        assert_eq!(date_value("2019-02-28"), Ok(Some(day)));
        assert_eq!(date_value(""), Ok(None));
        for bad in ["2019-02-29", "2019-2-28", "28/02/2019", "2019-02-28T00:00:00", "-019-04-09", "+019-04-09"] {
            assert!(date_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        let paris: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let noon_utc = 1_554_120_000_000_000; // 2019-04-01T12:00:00Z
        assert_eq!(timestamp("2019-04-01T12:00:00Z", None), Ok(Some(noon_utc)));
        assert_eq!(timestamp("2019-04-01T14:00:00+02:00", None), Ok(Some(noon_utc)));
        assert_eq!(timestamp("2019-04-01 14:00:00", Some(paris)), Ok(Some(noon_utc)), "CEST is UTC+2");
        assert_eq!(timestamp("2019-04-01T14:00:00.000001", Some(paris)), Ok(Some(noon_utc + 1)));
        assert_eq!(timestamp("", None), Ok(None));
        assert!(timestamp("2019-04-01 14:00:00", None).unwrap_err().contains("no UTC offset"));
        assert!(timestamp("2019-03-31 02:30:00", Some(paris)).unwrap_err().contains("does not exist"));
        let repeated = timestamp("2019-10-27 02:30:00", Some(paris)).unwrap().unwrap();
        assert_eq!(repeated, 1_572_136_200_000_000, "the earlier of the two instants (CEST)");
        for bad in ["2019-04-01", "12:00", "yesterday", "2019-04-01T25:00:00Z"] {
            assert!(timestamp(bad, Some(paris)).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_lists() {
        let mut items = Vec::new();
        let mut list = |text: &str| text_list_into(text, &mut items).map(|present| present.then(|| items.clone()));
        assert_eq!(list("[\"red dress\", \"shoes\"]"), Ok(Some(vec!["red dress".into(), "shoes".into()])));
        assert_eq!(list("['a', 'b,c']"), Ok(Some(vec!["a".into(), "b,c".into()])));
        assert_eq!(list("[\"it's\", 'say \\'hi\\'']"), Ok(Some(vec!["it's".into(), "say 'hi'".into()])));
        assert_eq!(list("[]"), Ok(Some(vec![])));
        assert_eq!(list("[ ]"), Ok(Some(vec![])));
        assert_eq!(list("[\"\"]"), Ok(Some(vec![String::new()])));
        assert_eq!(list(""), Ok(None));
        for bad in ["a, b", "[a]", "[\"a\" \"b\"]", "[\"a\",]", "[\"a]", "\"a\"", "[\"a\"]x"] {
            assert!(list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conventions_strip_prefixes_read_null_values_spellings_and_formats() {
        let shopify = Conventions {
            strip_prefix: Some("'".into()),
            null_values: vec!["N/A".into()],
            true_values: vec!["yes".into(), "TRUE".into()],
            false_values: vec!["no".into(), "FALSE".into()],
            timestamp_format: Some("%Y-%m-%d %H:%M:%S %z".into()),
        };
        assert_eq!(shopify.prepare("'75008"), "75008");
        assert_eq!(shopify.prepare("75008"), "75008", "a field without the prefix is read as it is");
        assert_eq!(shopify.prepare("N/A"), "");
        assert_eq!(shopify.flag("Yes"), Ok(Some(true)));
        assert_eq!(shopify.flag("false"), Ok(Some(false)));
        assert_eq!(shopify.flag(""), Ok(None));
        assert!(shopify.flag("1").is_err(), "declared spellings replace the default ones");
        assert_eq!(shopify.timestamp("2019-04-01 14:00:00 +0200", None), Ok(Some(1_554_120_000_000_000)));
        assert!(shopify.timestamp("2019-04-01 14:00:00", None).is_err(), "the offset is part of the format");
        let plain = Conventions::default();
        assert_eq!((plain.prepare("'x"), plain.flag("1")), ("'x", Ok(Some(true))));
    }

    #[test]
    fn long_values_are_cut_in_reasons() {
        let reason = flag(&"x".repeat(500)).unwrap_err();
        assert!(reason.len() < 80, "{reason}");
    }
}
