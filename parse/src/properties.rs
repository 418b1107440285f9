//! What each parser must hold for any input, as functions that panic when it
//! does not: the fuzz targets (`fuzz/fuzz_targets/`) call them on generated
//! bytes for millions of runs, and `parse/tests/corpus.rs` replays the kept
//! seeds and every crash ever found (`fuzz/regressions/`) on stable. Each
//! takes raw bytes; its first bytes choose the options (a line limit, a
//! column kind, a decimal's precision) so one target covers every option.

use chrono::NaiveDate;

use crate::arguments::{self, AsOf};
use crate::header;
use crate::location::Location;
use crate::records::{Chunker, Fields, Framing, KEPT_OF_LONG_LINE};
use crate::values;

/// A record as read: (first line number, lines spanned, bytes, cut).
type Record = (u64, u32, Vec<u8>, bool);

/// The records of `input` read with chunks of `target` bytes, lines
/// limited to `max_line`, framed by `framing`.
fn records(input: &[u8], target: usize, max_line: usize, framing: Framing) -> Vec<Record> {
    let mut chunker = Chunker::framed(input, target, max_line, framing);
    let mut out = Vec::new();
    while let Some(chunk) = chunker.next_chunk().expect("reading a slice never fails") {
        out.extend(chunk.records().map(|r| (r.line, r.lines, r.bytes.to_vec(), r.cut)));
    }
    out
}

/// The splitter gives one record per line of the input, numbered from 1,
/// each the line without its line end (LF or CRLF), or, past the line
/// limit, a marked prefix of it; and the same records however the input is
/// cut into chunks (of one byte, and of seven).
pub fn split_records(data: &[u8]) {
    let Some((&options, input)) = data.split_first() else { return };
    let max_line = 1 + usize::from(options % 64);
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if input.is_empty() || input.ends_with(b"\n") {
        lines.pop(); // nothing after the last line end is not a line
    }
    let whole = records(input, input.len() + 1, max_line, Framing::Lines);
    assert_eq!(whole.len(), lines.len(), "one record per line");
    for (index, ((line, spanned, bytes, cut), raw)) in whole.iter().zip(&lines).enumerate() {
        assert_eq!((*line, *spanned), (index as u64 + 1, 1), "lines numbered from 1 in order, one each");
        let text = raw.strip_suffix(b"\r").unwrap_or(raw);
        if text.len() > max_line {
            assert!(*cut, "line {line} is longer than {max_line} bytes: marked cut");
            assert_eq!(bytes.as_slice(), &text[..KEPT_OF_LONG_LINE.min(max_line)], "line {line}: its start kept");
        } else {
            assert!(!*cut, "line {line} fits: not cut");
            assert_eq!(bytes.as_slice(), text, "line {line} read whole");
        }
    }
    // One byte at a time cuts everywhere; seven cuts at odd places mid-line.
    for target in [1, 7] {
        let chunked = records(input, target, max_line, Framing::Lines);
        assert_eq!(chunked, whole, "chunks of {target} bytes read the same records");
    }
}

/// Quoted framing, against a plain reading of its rule line by line: a
/// record ends at the first line end where its quotes are balanced; one
/// still open after `max_lines` lines or `max_bytes` bytes, before a long
/// line or at the end of the input is its first line alone, and the next
/// record starts at the line after that; a long line is a record of its
/// own, cut. Every line is in exactly one record, and the records are the
/// same however the input is cut into chunks.
pub fn split_quoted_records(data: &[u8]) {
    let Some((&[a, b, c], input)) = data.split_first_chunk::<3>() else { return };
    let max_line = 1 + usize::from(a % 64);
    let framing = Framing::Quoted { max_lines: 1 + u32::from(b % 8), max_bytes: 1 + usize::from(c) };
    let Framing::Quoted { max_lines, max_bytes } = framing else { unreachable!() };
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if input.is_empty() || input.ends_with(b"\n") {
        lines.pop();
    }
    let ended = |i: usize| usize::from(i + 1 < lines.len() || input.ends_with(b"\n"));
    let text = |i: usize| lines[i].strip_suffix(b"\r").unwrap_or(lines[i]);
    let long = |i: usize| text(i).len() > max_line;
    let quotes_odd = |i: usize| text(i).iter().filter(|&&b| b == b'"').count() % 2 == 1;
    let mut expected: Vec<Record> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let number = i as u64 + 1;
        if long(i) {
            expected.push((number, 1, text(i)[..KEPT_OF_LONG_LINE.min(max_line)].to_vec(), true));
            i += 1;
            continue;
        }
        let (mut j, mut open, mut bytes) = (i, false, 0);
        let last = loop {
            open ^= quotes_odd(j);
            bytes += lines[j].len() + ended(j);
            if !open {
                break j;
            }
            if j - i + 1 >= max_lines as usize || bytes >= max_bytes || j + 1 >= lines.len() || long(j + 1) {
                break i; // unterminated: its first line alone
            }
            j += 1;
        };
        let mut record = lines[i..=last].join(&b"\n"[..]);
        if record.ends_with(b"\r") {
            record.pop();
        }
        expected.push((number, (last - i + 1) as u32, record, false));
        i = last + 1;
    }
    let spanned: u64 = expected.iter().map(|r| u64::from(r.1)).sum();
    assert_eq!(spanned, lines.len() as u64, "every line in exactly one record");
    for target in [input.len() + 1, 1, 7] {
        assert_eq!(records(input, target, max_line, framing), expected, "chunks of {target} bytes");
    }
}

/// Fields as RFC 4180 writes them.
fn encode(fields: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::records::write_record(&mut out, fields);
    out
}

fn split(record: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut fields = Fields::default();
    fields.split(record)?;
    Ok((0..fields.len()).map(|i| fields.get(record, i).to_vec()).collect())
}

/// Any record either splits or is refused with a reason, the same fields
/// or reason as the field-by-field split gives; what splits, written back
/// as RFC 4180, splits to the same fields; a record without quotes is its
/// fields joined by commas; and any list of fields, written as RFC 4180,
/// splits back to itself.
pub fn split_fields(data: &[u8]) {
    let mut reference = Fields::default();
    let by_field = reference
        .split_one_field_at_a_time(data)
        .map(|()| (0..reference.len()).map(|i| reference.get(data, i).to_vec()).collect::<Vec<_>>());
    assert_eq!(split(data), by_field, "the block split and the field-by-field split agree");
    if let Ok(fields) = split(data) {
        assert!(!fields.is_empty(), "a record has at least one field");
        if !data.contains(&b'"') {
            assert_eq!(fields.join(&b","[..]), data, "unquoted fields joined give the record back");
        }
        assert_eq!(split(&encode(&fields)).as_ref(), Ok(&fields), "re-encoded fields split the same");
    }
    // 0xFF never occurs in UTF-8: it separates the fields to encode.
    let fields: Vec<Vec<u8>> = data.split(|&b| b == 0xFF).map(<[u8]>::to_vec).collect();
    assert_eq!(split(&encode(&fields)), Ok(fields), "encoded fields split back to themselves");
}

/// Time zones the value parsers are tried in: none, UTC, and zones with
/// clock changes, half-hour and odd offsets.
const ZONES: [Option<&str>; 6] = [
    None,
    Some("UTC"),
    Some("Europe/Paris"),
    Some("America/New_York"),
    Some("Asia/Kolkata"),
    Some("Australia/Lord_Howe"),
];

/// Every value parser: a value that parses prints back to text that parses
/// to an equal value; the empty field is missing, never a value; and the
/// accepted text means what the column's rule says (an integer is the
/// integer Rust reads from it, a decimal never rounds, a file's date is
/// the file's).
pub fn parse_values(data: &[u8]) {
    let Some((&[kind, a, b], rest)) = data.split_first_chunk::<3>() else { return };
    let text = String::from_utf8_lossy(rest);
    let text = text.as_ref();
    if kind >= 0xF0 {
        return conventions_print_back(text, kind, a);
    }
    match kind % 9 {
        0 => {
            if let Ok(Some(flag)) = values::flag(text) {
                assert_eq!(values::flag(if flag { "True" } else { "False" }), Ok(Some(flag)));
                let expected = if flag { ["true", "1"] } else { ["false", "0"] };
                assert!(text.eq_ignore_ascii_case(expected[0]) || text == expected[1], "{text:?} read as {flag}");
            }
        }
        1 => {
            if let Ok(Some(n)) = values::count(text) {
                assert_eq!(values::count(&n.to_string()), Ok(Some(n)));
                let whole = text.split_once('.').map_or(text, |(whole, _)| whole);
                assert_eq!(whole.parse::<i64>(), Ok(n), "{text:?} is the integer {n}");
            }
        }
        2 => {
            let mut items = Vec::new();
            if let Ok(true) = values::count_list_into(text, &mut items) {
                let printed = format!("[{}]", items.iter().map(i64::to_string).collect::<Vec<_>>().join(", "));
                assert_eq!(values::count_list(&printed), Ok(Some(items)), "{text:?} printed as {printed}");
            }
        }
        3 => {
            if let Ok(Some(x)) = values::float(text) {
                assert!(x.is_finite());
                assert_eq!(values::float(&format!("{x:?}")), Ok(Some(x)));
            }
        }
        4 => decimal_prints_back(text, a, b),
        5 => {
            if let Ok(Some(date)) = values::date_value(text) {
                assert_eq!(date.format("%Y-%m-%d").to_string(), text, "a date is read only from its one spelling");
            }
        }
        6 => {
            let file = NaiveDate::from_ymd_opt(2019, 4, 1).expect("a date");
            if let Ok(Some(date)) = values::file_date(text, file) {
                assert_eq!(date, file, "a file's date column holds only the file's date");
            }
            assert_eq!(values::FileDate::new(file).parse(text), values::file_date(text, file));
        }
        7 => {
            let zone = ZONES[usize::from(a) % ZONES.len()].map(|name| name.parse::<chrono_tz::Tz>().expect("a zone"));
            if let Ok(Some(micros)) = values::timestamp(text, zone) {
                let instant = chrono::DateTime::from_timestamp_micros(micros).expect("an instant in range");
                let printed = instant.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
                assert_eq!(values::timestamp(&printed, Some(chrono_tz::UTC)), Ok(Some(micros)), "{printed}");
            }
        }
        _ => {
            let mut items = Vec::new();
            if let Ok(true) = values::text_list_into(text, &mut items) {
                let quoted: Vec<String> = items
                    .iter()
                    .map(|item| format!("\"{}\"", item.replace('\\', "\\\\").replace('"', "\\\"")))
                    .collect();
                let printed = format!("[{}]", quoted.join(", "));
                let mut again = Vec::new();
                assert_eq!(values::text_list_into(&printed, &mut again), Ok(true), "{printed}");
                assert_eq!(again, items, "{text:?} printed as {printed}");
            }
        }
    }
    for empty in [values::flag("").map(|v| v.is_some()), values::count("").map(|v| v.is_some())] {
        assert_eq!(empty, Ok(false), "an empty field is missing");
    }
}

/// Declared conventions (the first byte's last 16 values): a flag by its
/// spellings and a timestamp by its format print back to the same value,
/// with the prefix put back and stripped again; a null value is missing.
fn conventions_print_back(text: &str, kind: u8, a: u8) {
    const FORMATS: [&str; 3] = ["%Y-%m-%d %H:%M:%S %z", "%d/%m/%Y %H:%M %:z", "%Y-%m-%dT%H:%M:%S%.f%z"];
    let conventions = values::Conventions {
        strip_prefix: (a % 2 == 1).then(|| "'".to_string()),
        null_values: vec!["N/A".into()],
        true_values: vec!["yes".into(), "Y".into()],
        false_values: vec!["no".into(), "N".into()],
        timestamp_format: Some(FORMATS[usize::from(a) % FORMATS.len()].to_string()),
    };
    let prepared = conventions.prepare(text);
    if text == "N/A" {
        assert_eq!(prepared, "", "a null value is read as missing");
    }
    let prefixed = |value: &str| match &conventions.strip_prefix {
        Some(prefix) => format!("{prefix}{value}"),
        None => value.to_string(),
    };
    if kind.is_multiple_of(2) {
        if let Ok(Some(flag)) = conventions.flag(prepared) {
            let printed = prefixed(if flag { "yes" } else { "no" });
            assert_eq!(conventions.flag(conventions.prepare(&printed)), Ok(Some(flag)), "{text:?}");
        }
    } else if let Ok(Some(micros)) = conventions.timestamp(prepared, None) {
        let format = conventions.timestamp_format.as_deref().expect("a format");
        let instant = chrono::DateTime::from_timestamp_micros(micros).expect("an instant in range");
        let printed = prefixed(&instant.fixed_offset().format(format).to_string());
        let again = conventions.timestamp(conventions.prepare(&printed), None);
        // A format without seconds (the second one) prints the minute only.
        let minute = |t: i64| t.div_euclid(60_000_000);
        match again {
            Ok(Some(back)) if format.contains("%S") => assert_eq!(back, micros, "{text:?} printed as {printed}"),
            Ok(Some(back)) => assert_eq!(minute(back), minute(micros), "{text:?} printed as {printed}"),
            other => panic!("{text:?} printed as {printed} reads as {other:?}"),
        }
    }
}

/// A decimal that parses fits its precision and prints back, at its
/// scale, to the same value (never rounded).
fn decimal_prints_back(text: &str, a: u8, b: u8) {
    let precision = 1 + a % 38;
    let scale = (b % (precision + 1)) as i8;
    let Ok(Some(value)) = values::decimal(text, precision, scale) else { return };
    assert!(value.unsigned_abs() < 10u128.pow(u32::from(precision)), "{text:?} fits decimal({precision},{scale})");
    let digits = format!("{:0>width$}", value.unsigned_abs(), width = scale as usize + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale as usize);
    let sign = if value < 0 { "-" } else { "" };
    let printed = if scale == 0 { format!("{sign}{whole}") } else { format!("{sign}{whole}.{fraction}") };
    assert_eq!(values::decimal(&printed, precision, scale), Ok(Some(value)), "{text:?} printed as {printed}");
}

/// Command-line values: a location, size, day or `--as-of` point that
/// parses prints back to text that parses to the same thing (a location's
/// normal form is a fixed point), and sizes respect the floor.
pub fn parse_arguments(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    if let Ok(location) = Location::parse(text) {
        assert_eq!(Location::parse(&location.to_string()), Ok(location.clone()), "{text:?} normalised is stable");
        if let Location::S3 { bucket, prefix } = &location {
            assert!(!bucket.is_empty() && !bucket.contains('/'));
            assert!(prefix.is_empty() || prefix.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
        }
    }
    if let Ok(bytes) = arguments::size(text) {
        assert!(bytes >= 64 << 20, "{text:?} is at least the floor");
        if bytes < 1 << 53 {
            assert_eq!(arguments::size(&bytes.to_string()), Ok(bytes), "{text:?} is {bytes} bytes");
        }
    }
    let today = NaiveDate::from_ymd_opt(2026, 12, 6).expect("a date");
    if let Ok(day) = arguments::date(text, today) {
        let printed = day.format("%Y-%m-%d").to_string();
        assert!(printed == text || ["today", "yesterday"].contains(&text), "{text:?} read as {printed}");
    }
    if let Ok(point) = AsOf::parse(text) {
        assert_eq!(AsOf::parse(&point.to_string()), Ok(point), "{text:?}");
    }
}

/// Header matching, against its rule: a header is refused exactly when a
/// column it lacks cannot be filled (not nullable, or `missing_columns` is
/// not "null"), a field no column reads is not ignored, or a field repeats;
/// otherwise each column comes from the field with its header text (or the
/// file's date, or null when it is missing and may be), and every field is
/// read by one column or ignored, never both. Names and header texts come
/// from a small alphabet (of Shopify's spellings) so they collide.
pub fn match_header(data: &[u8]) {
    const TEXTS: [&str; 8] = ["id", "Variant SKU", "Handle", "id ", "Body (HTML)", "", "sku", "Handle"];
    let Some((&first, rest)) = data.split_first() else { return };
    let policies = header::Policies { ignore_unknown: first & 1 == 1, null_missing: first & 2 == 2 };
    let wanted_count = usize::from(first >> 2) % 6;
    let (described, fields) = rest.split_at(rest.len().min(wanted_count));
    // The columns, as a definition that validates has them: header texts
    // distinct among the columns read from the export.
    let mut columns: Vec<header::Wanted<'_>> = Vec::new();
    for (i, b) in described.iter().enumerate() {
        let text = TEXTS[usize::from(b & 7)];
        let named = ["c0", "c1", "c2", "c3", "c4", "c5"][i];
        let column = match b >> 6 {
            0 => header::Wanted::FileDate,
            1 => header::Wanted::Field { name: text, header: text, nullable: b & 8 == 8 },
            _ => header::Wanted::Field { name: named, header: text, nullable: b & 8 == 8 },
        };
        let taken = |c: &header::Wanted<'_>| matches!((c, column), (header::Wanted::Field { header: a, .. }, header::Wanted::Field { header: b, .. }) if *a == b);
        if !columns.iter().any(taken) {
            columns.push(column);
        }
    }
    let header: Vec<String> = fields.iter().map(|b| TEXTS[usize::from(b & 7)].to_string()).collect();
    let result = header::match_header(&columns, &header, policies);

    let read =
        |text: &str| columns.iter().any(|c| matches!(c, header::Wanted::Field { header, .. } if *header == text));
    let unfillable = columns.iter().any(|c| match c {
        header::Wanted::Field { header: text, nullable, .. } => {
            let fillable = policies.null_missing && *nullable;
            !fillable && !header.iter().any(|h| h == text)
        }
        header::Wanted::FileDate => false,
    });
    let unknown = !policies.ignore_unknown && header.iter().any(|h| !read(h));
    let repeated = header.iter().enumerate().any(|(i, h)| header[..i].contains(h));
    let layout = match result {
        Err(problems) => {
            assert!(unfillable || unknown || repeated, "{header:?} against {columns:?} refused: {problems:?}");
            let expected = usize::from(unfillable) + usize::from(unknown) + usize::from(repeated);
            assert_eq!(problems.len(), expected, "each problem said once: {problems:?}");
            return;
        }
        Ok(layout) => layout,
    };
    assert!(!(unfillable || unknown || repeated), "{header:?} against {columns:?} taken: {layout:?}");
    assert_eq!(layout.field_count, header.len());
    assert_eq!(layout.sources.len(), columns.len(), "one source a column");
    let mut fields_read = vec![false; header.len()];
    let mut missing = Vec::new();
    for (column, source) in columns.iter().zip(&layout.sources) {
        match (column, source) {
            (header::Wanted::FileDate, header::ValueSource::FileDate) => {}
            (header::Wanted::Field { header: text, .. }, header::ValueSource::Field(p)) => {
                assert_eq!(header[*p], *text, "a column reads the field with its header text");
                assert!(!fields_read[*p], "a field read by two columns");
                fields_read[*p] = true;
            }
            (header::Wanted::Field { name, header: text, nullable }, header::ValueSource::Missing) => {
                assert!(policies.null_missing && *nullable && !header.iter().any(|h| h == text));
                missing.push(name.to_string());
            }
            (column, source) => panic!("{column:?} from {source:?}"),
        }
    }
    assert_eq!(layout.missing, missing, "the missing columns, in order");
    let ignored: Vec<String> = header.iter().zip(&fields_read).filter(|(_, r)| !**r).map(|(h, _)| h.clone()).collect();
    assert_eq!(layout.ignored, ignored, "every field read or ignored, never both");
}
