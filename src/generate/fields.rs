//! The text of each field of a generated line, by the column's kind and
//! its `[columns.sample]` hints, as an exporter writes it; and the
//! malformed variants of a line that real exports contain (`--dirty`).

use chrono::{NaiveDate, TimeZone};

use super::{Row, SplitMix64};
use crate::definition::sample::{Sample, TextFormat};
use crate::definition::{Column, Kind};

/// The fields of `row`'s line on `date`.
pub(super) fn line(columns: &[&Column], row: &Row, date: NaiveDate) -> Vec<Vec<u8>> {
    let name = row_name(row.identity);
    columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            // Each column draws from its own stream: stable ones from the
            // row's identity, the others from its current revision.
            let salt = (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
            let seed = if column.sample.stable {
                row.identity
            } else {
                row.identity ^ row.revision.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            };
            let mut rng = SplitMix64::new(seed ^ salt);
            prefixed(column, field(column, &column.sample, &mut rng, &name, row.identity, date)).into_bytes()
        })
        .collect()
}

/// A generated value with the prefix its column strips put before it (an
/// empty field stays empty).
fn prefixed(column: &Column, text: String) -> String {
    match &column.conventions.strip_prefix {
        Some(prefix) if !text.is_empty() => format!("{prefix}{text}"),
        _ => text,
    }
}

/// A flag as the column writes it: its first declared spelling, else `True`/`False`.
fn flag_text(column: &Column, value: bool) -> String {
    let spellings = if value { &column.conventions.true_values } else { &column.conventions.false_values };
    spellings.first().map_or(if value { "True" } else { "False" }, String::as_str).to_string()
}

/// A row's name, for `{name}` in sample values (`blue-fox-1234`).
fn row_name(identity: u64) -> String {
    let mut rng = SplitMix64::new(identity);
    format!("{}-{}-{}", pick(&mut rng, ADJECTIVES), pick(&mut rng, NOUNS), rng.below(10_000))
}

fn field(column: &Column, sample: &Sample, rng: &mut SplitMix64, name: &str, identity: u64, date: NaiveDate) -> String {
    if column.kind == Kind::FileDate {
        return date.format("%Y-%m-%d").to_string();
    }
    let default_empty = if column.nullable && column.kind != Kind::Text { 0.01 } else { 0.0 };
    if rng.chance(sample.empty.unwrap_or(default_empty)) {
        return String::new();
    }
    if !sample.values.is_empty() {
        return weighted(rng, &sample.values, &sample.weights)
            .replace("{name}", name)
            .replace("{name_snake}", &name.replace('-', "_"));
    }
    let range = |low: f64, high: f64| (sample.min.unwrap_or(low), sample.max.unwrap_or(high));
    match column.kind {
        Kind::Text => match sample.format {
            Some(TextFormat::Uuid) => uuid(if sample.stable { identity } else { rng.next() }),
            Some(TextFormat::Code) => (0..10).map(|_| ALPHANUMERIC[rng.below(36) as usize] as char).collect(),
            Some(TextFormat::Digits) => {
                let n = if sample.stable { SplitMix64::new(identity).next() } else { rng.next() };
                (1_000_000_000_000 + n % 9_000_000_000_000).to_string()
            }
            Some(TextFormat::Word) | None => pick(rng, NOUNS).to_string(),
            Some(TextFormat::Html) => {
                let paragraphs = 1 + rng.below(3);
                let paragraph = |rng: &mut SplitMix64| {
                    format!("<p>{} {}, \"{}\" inside.</p>", pick(rng, ADJECTIVES), pick(rng, NOUNS), pick(rng, NOUNS))
                };
                (0..paragraphs).map(|_| paragraph(rng)).collect::<Vec<_>>().join("\n")
            }
        },
        Kind::Flag => flag_text(column, rng.chance(0.45)),
        Kind::Count => {
            let (low, high) = range(0.0, 199.0);
            let value = if sample.min.is_none() && sample.max.is_none() && rng.chance(0.59) {
                0
            } else {
                low as i64 + rng.below((high - low) as u64 + 1) as i64
            };
            // pandas writes counts as floats once a column has a missing value.
            if rng.chance(0.01) {
                format!("{value}.0")
            } else {
                value.to_string()
            }
        }
        Kind::CountList => {
            let [shortest, longest] = sample.length.unwrap_or([1, 6]);
            let (low, high) = range(0.0, 47.0);
            if sample.length.is_none() && rng.chance(0.06) {
                return "[]".to_string();
            }
            if sample.length.is_none() && rng.chance(0.69) {
                return "[0]".to_string();
            }
            let n = shortest + rng.below(u64::from(longest - shortest) + 1) as u32;
            let items: Vec<String> =
                (0..n).map(|_| (low as i64 + rng.below((high - low) as u64 + 1) as i64).to_string()).collect();
            format!("[{}]", items.join(", "))
        }
        Kind::Float => {
            let (low, high) = range(0.0, 1.0);
            format!("{:.4}", low + rng.unit() * (high - low))
        }
        Kind::Decimal => {
            let scale = match column.data_type {
                datafusion::arrow::datatypes::DataType::Decimal128(_, s) => s.max(0) as usize,
                _ => 2,
            };
            let (low, high) = range(0.0, 1000.0);
            format!("{:.scale$}", low + rng.unit() * (high - low))
        }
        Kind::Date => (date - chrono::Duration::days(rng.below(365) as i64)).format("%Y-%m-%d").to_string(),
        Kind::Timestamp => {
            let local =
                date.and_hms_opt(0, 0, 0).expect("midnight") + chrono::Duration::seconds(rng.below(86_400) as i64);
            match column.time_zone {
                // Local time as the exporter's clock shows it (a skipped hour is moved on).
                Some(zone) => match zone.from_local_datetime(&local).earliest() {
                    Some(_) => local.format("%Y-%m-%d %H:%M:%S").to_string(),
                    None => (local + chrono::Duration::hours(1)).format("%Y-%m-%d %H:%M:%S").to_string(),
                },
                // UTC, in the column's declared format (with its offset) if it has one.
                None => {
                    let format = column.conventions.timestamp_format.as_deref().unwrap_or("%Y-%m-%dT%H:%M:%SZ");
                    local.and_utc().format(format).to_string()
                }
            }
        }
        Kind::TextList => {
            let [shortest, longest] = sample.length.unwrap_or([0, 3]);
            let n = shortest + rng.below(u64::from(longest - shortest) + 1) as u32;
            let items: Vec<String> =
                (0..n).map(|_| format!("\"{} {}\"", pick(rng, ADJECTIVES), pick(rng, NOUNS))).collect();
            format!("[{}]", items.join(", "))
        }
        Kind::FileDate | Kind::Derived | Kind::RowHash => unreachable!("not generated"),
    }
}

/// A malformed variant of a line, of the kinds seen in real exports.
pub(super) fn dirty(columns: &[&Column], key: &str, mut fields: Vec<Vec<u8>>, rng: &mut SplitMix64) -> Vec<Vec<u8>> {
    let broken = |kind: Kind| -> Option<&'static [u8]> {
        Some(match kind {
            Kind::Flag => b"yes",
            Kind::Count => b"12abc",
            Kind::CountList => b"[1, two]",
            Kind::Float => b"n/a",
            Kind::Decimal => b"12.3.4",
            Kind::Date => b"2019-02-30",
            Kind::Timestamp => b"yesterday",
            Kind::TextList => b"[unquoted]",
            Kind::FileDate => b"1999-12-31",
            Kind::Text | Kind::Derived | Kind::RowHash => return None,
        })
    };
    let breakable: Vec<usize> = (0..columns.len()).filter(|&i| broken(columns[i].kind).is_some()).collect();
    let texts: Vec<usize> =
        (0..columns.len()).filter(|&i| columns[i].kind == Kind::Text && columns[i].name != key).collect();
    // A key transform.sql derives (a product's handle and SKU) is not in the line.
    let key_at = columns.iter().position(|c| c.name == key);
    match (rng.below(6), key_at) {
        (0, _) => {
            fields.pop();
        }
        (1, _) => fields.push(b"extra".to_vec()),
        (2, _) if !breakable.is_empty() => {
            let i = breakable[rng.below(breakable.len() as u64) as usize];
            let value = broken(columns[i].kind).expect("breakable");
            // `yes` is no boolean by default, but may be a declared spelling.
            let accepted = columns[i].kind == Kind::Flag && columns[i].conventions.flag("yes").is_ok();
            fields[i] = if accepted { b"perhaps".to_vec() } else { value.to_vec() };
        }
        (3, _) if !texts.is_empty() => {
            fields[texts[rng.below(texts.len() as u64) as usize]] = b"caf\xE9-latin1".to_vec()
        }
        (4, Some(at)) => fields[at] = Vec::new(),
        // A well-formed earlier version of the row's line: a duplicate the last line overrides.
        _ if !texts.is_empty() => fields[texts[0]] = b"stale_duplicate".to_vec(),
        _ => {
            fields.pop();
        }
    }
    fields
}

fn weighted<'a>(rng: &mut SplitMix64, values: &'a [String], weights: &[u32]) -> &'a str {
    if weights.is_empty() {
        return &values[rng.below(values.len() as u64) as usize];
    }
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    let mut at = rng.below(total.max(1));
    for (value, weight) in values.iter().zip(weights) {
        if at < u64::from(*weight) {
            return value;
        }
        at -= u64::from(*weight);
    }
    &values[values.len() - 1]
}

fn uuid(identity: u64) -> String {
    let mut rng = SplitMix64::new(identity.rotate_left(17));
    let (a, b) = (rng.next(), rng.next());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

fn pick<'a>(rng: &mut SplitMix64, words: &[&'a str]) -> &'a str {
    words[rng.below(words.len() as u64) as usize]
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const ADJECTIVES: &[&str] =
    &["blue", "urban", "happy", "little", "wild", "golden", "modern", "cozy", "bright", "north"];
const NOUNS: &[&str] =
    &["fox", "garden", "boutique", "outfitters", "candles", "coffee", "threads", "studio", "market", "goods"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{built_in, Catalog};

    #[test]
    fn uuids_look_like_uuids() {
        let id = uuid(42);
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(&id[14..15], "4");
        assert_ne!(uuid(42), uuid(43));
    }

    #[test]
    fn every_generated_value_reads_by_its_kind() {
        let date = NaiveDate::from_ymd_opt(2019, 4, 1).unwrap();
        for def in Catalog::built_in().tables() {
            let columns: Vec<&Column> = def.export_columns().collect();
            for identity in 0..500u64 {
                let fields = line(&columns, &Row { identity, revision: identity % 3 }, date);
                for (column, text) in columns.iter().zip(&fields) {
                    let text = std::str::from_utf8(text).unwrap();
                    let parsed = crate::read::values::check(column, text, date);
                    assert!(parsed.is_ok(), "{}.{}: {text:?}: {parsed:?}", def.name, column.name);
                }
            }
        }
    }

    #[test]
    fn stable_columns_keep_their_value_when_a_row_changes() {
        let def = built_in("shopify_configuration");
        let columns: Vec<&Column> = def.export_columns().collect();
        let date = NaiveDate::from_ymd_opt(2019, 4, 1).unwrap();
        let (before, after) = (
            line(&columns, &Row { identity: 9, revision: 0 }, date),
            line(&columns, &Row { identity: 9, revision: 1 }, date),
        );
        let id = columns.iter().position(|c| c.name == "id").unwrap();
        assert_eq!(before[id], after[id]);
        assert_ne!(before, after);
    }
}
