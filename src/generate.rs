//! `shoplake generate`: realistic daily exports for the demo, the tests and
//! the benchmarks, deterministic for the same arguments. Shops churn from
//! day to day (about 1% added, 1% removed, 5% changed); `--dirty` adds the
//! malformed lines real exports contain.

use chrono::NaiveDate;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::definition::{Column, Kind, TableDefinition};
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

#[derive(Debug, Clone)]
pub struct GenerateConfig {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Shops on the first day.
    pub rows: u64,
    pub seed: u64,
    pub out: Location,
    pub dirty: bool,
}

/// What was written for one day.
#[derive(Debug, Clone)]
pub struct GeneratedFile {
    pub location: Location,
    pub lines: u64,
    pub bytes: u64,
}

/// A shop is its identity and how many times its configuration changed;
/// its line is derived from both, so a week of a million shops fits in a
/// few megabytes.
#[derive(Debug, Clone, Copy)]
struct Shop {
    identity: u64,
    revision: u64,
}

pub async fn run(storage: &Storage, config: &GenerateConfig) -> Result<Vec<GeneratedFile>> {
    let def = TableDefinition::shopify_configuration();
    let mut rng = SplitMix64::new(config.seed);
    let mut shops: Vec<Shop> = (0..config.rows).map(|_| Shop { identity: rng.next(), revision: 0 }).collect();
    let mut written = Vec::new();
    let mut date = config.from;
    while date <= config.to {
        if date > config.from {
            churn(&mut shops, &mut rng);
        }
        written.push(write_day(storage, config, def, &shops, date, &mut rng).await?);
        date = date.succ_opt().expect("dates before year 262143");
    }
    Ok(written)
}

/// One day later: ~1% of shops uninstall, ~5% change their configuration, ~1% install.
fn churn(shops: &mut Vec<Shop>, rng: &mut SplitMix64) {
    shops.retain(|_| !rng.chance(0.01));
    for shop in shops.iter_mut() {
        if rng.chance(0.05) {
            shop.revision += 1;
        }
    }
    let added = (shops.len() as f64 * 0.01).round().max(1.0) as usize;
    shops.extend((0..added).map(|_| Shop { identity: rng.next(), revision: 0 }));
}

async fn write_day(
    storage: &Storage,
    config: &GenerateConfig,
    def: &TableDefinition,
    shops: &[Shop],
    date: NaiveDate,
    rng: &mut SplitMix64,
) -> Result<GeneratedFile> {
    let location = config.out.join(&crate::source::file_name(date));
    let columns: Vec<&Column> = def.export_columns().collect();
    let mut sink = Sink::create(storage, &location).await?;
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    let header: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    chunk.extend_from_slice(header.join(",").as_bytes());
    chunk.push(b'\n');
    let mut lines = 0u64;
    let mut bytes = 0u64;
    let day = date.format("%Y-%m-%d").to_string();
    for shop in shops {
        let fields = shop_fields(&columns, shop, &day);
        if config.dirty && rng.chance(0.004) {
            write_line(&mut chunk, &dirty(&columns, fields.clone(), rng));
            lines += 1;
        }
        write_line(&mut chunk, &fields);
        lines += 1;
        if chunk.len() >= CHUNK {
            bytes += chunk.len() as u64;
            sink.write(&chunk, &location).await?;
            chunk.clear();
        }
    }
    bytes += chunk.len() as u64;
    sink.write(&chunk, &location).await?;
    sink.finish(&location).await?;
    Ok(GeneratedFile { location, lines, bytes })
}

const CHUNK: usize = 4 << 20;

/// The text of each field of a shop's line, as the exporter writes them.
fn shop_fields(columns: &[&Column], shop: &Shop, day: &str) -> Vec<Vec<u8>> {
    let mut identity_rng = SplitMix64::new(shop.identity);
    let mut rng = SplitMix64::new(shop.identity ^ shop.revision.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let shop_name = format!(
        "{}-{}-{}",
        pick(&mut identity_rng, ADJECTIVES),
        pick(&mut identity_rng, NOUNS),
        identity_rng.below(10_000)
    );
    columns
        .iter()
        .map(|column| {
            let text = match (column.kind, column.name.as_str()) {
                (Kind::FileDate, _) => day.to_string(),
                (Kind::Text, "id") => uuid(shop.identity),
                (Kind::Text, "shop_domain") => format!("{shop_name}.myshopify.com"),
                (Kind::Text, "application_id") => {
                    if identity_rng.chance(0.03) {
                        String::new()
                    } else {
                        (0..10).map(|_| ALPHANUMERIC[identity_rng.below(36) as usize] as char).collect()
                    }
                }
                (Kind::Text, "index_prefix") => match rng.below(100) {
                    0..=49 => "shopify_".to_string(),
                    50..=96 => format!("{}_", shop_name.replace('-', "_")),
                    _ => String::new(),
                },
                (Kind::Text, "install_channel") => {
                    if rng.chance(0.03) {
                        String::new()
                    } else {
                        pick(&mut rng, CHANNELS).to_string()
                    }
                }
                (Kind::Text, _) => pick(&mut rng, NOUNS).to_string(),
                (Kind::Flag, _) => match rng.below(100) {
                    0 => String::new(),
                    1..=55 => "False".to_string(),
                    _ => "True".to_string(),
                },
                (Kind::Count, _) => match rng.below(100) {
                    0 => String::new(),
                    1 => format!("{}.0", rng.below(50)),
                    2..=60 => "0".to_string(),
                    _ => rng.below(200).to_string(),
                },
                (Kind::CountList, _) => match rng.below(100) {
                    0 => String::new(),
                    1..=5 => "[]".to_string(),
                    6..=70 => "[0]".to_string(),
                    _ => {
                        let n = 1 + rng.below(6);
                        let items: Vec<String> = (0..n).map(|_| rng.below(48).to_string()).collect();
                        format!("[{}]", items.join(", "))
                    }
                },
                (Kind::Derived | Kind::RowHash, _) => unreachable!("not in the export"),
            };
            text.into_bytes()
        })
        .collect()
}

/// A malformed variant of a line, of the kinds seen in real exports.
fn dirty(columns: &[&Column], mut fields: Vec<Vec<u8>>, rng: &mut SplitMix64) -> Vec<Vec<u8>> {
    let position = |kind: Kind| columns.iter().position(|c| c.kind == kind).expect("kind present");
    let named = |name: &str| columns.iter().position(|c| c.name == name).expect("column present");
    match rng.below(9) {
        0 => {
            fields.pop();
        }
        1 => fields.push(b"extra".to_vec()),
        2 => fields[position(Kind::Flag)] = b"yes".to_vec(),
        3 => fields[position(Kind::Count)] = b"12abc".to_vec(),
        4 => fields[position(Kind::CountList)] = b"[1, two]".to_vec(),
        5 => fields[position(Kind::FileDate)] = b"1999-12-31".to_vec(),
        6 => fields[named("shop_domain")] = b"caf\xE9-latin1.myshopify.com".to_vec(),
        7 => fields[named("id")] = Vec::new(),
        // A well-formed earlier version of the shop's line: a duplicate the last line overrides.
        _ => fields[named("install_channel")] = b"stale_duplicate".to_vec(),
    }
    fields
}

/// Appends one CSV line, quoting fields that need it (RFC 4180).
fn write_line(out: &mut Vec<u8>, fields: &[Vec<u8>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if field.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
            out.push(b'"');
            for &b in field {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(field);
        }
    }
    out.push(b'\n');
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
const CHANNELS: &[&str] = &["shopify_app_store", "direct", "partner_referral", "shopify_admin"];

/// A small, fast, seedable generator (SplitMix64): the same seed gives the
/// same exports on every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Where a generated file goes: a local file or an S3 object.
enum Sink {
    Local(tokio::fs::File),
    Remote(object_store::buffered::BufWriter),
}

impl Sink {
    async fn create(storage: &Storage, location: &Location) -> Result<Sink> {
        let io = |e: std::io::Error| Error::unavailable(Stage::Generate, location, e);
        match location {
            Location::Local(path) => {
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir).await.map_err(io)?;
                }
                Ok(Sink::Local(tokio::fs::File::create(path).await.map_err(io)?))
            }
            Location::S3 { .. } => {
                let (store, path) = storage.object_store(location).await?;
                Ok(Sink::Remote(object_store::buffered::BufWriter::new(store, path)))
            }
        }
    }

    fn writer(&mut self) -> &mut (dyn AsyncWrite + Unpin + Send) {
        match self {
            Sink::Local(file) => file,
            Sink::Remote(writer) => writer,
        }
    }

    async fn write(&mut self, bytes: &[u8], location: &Location) -> Result<()> {
        self.writer().write_all(bytes).await.map_err(|e| Error::unavailable(Stage::Generate, location, e))
    }

    async fn finish(mut self, location: &Location) -> Result<()> {
        self.writer().shutdown().await.map_err(|e| Error::unavailable(Stage::Generate, location, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_look_like_uuids() {
        let id = uuid(42);
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(&id[14..15], "4");
        assert_ne!(uuid(42), uuid(43));
    }

    #[test]
    fn lines_are_rfc4180() {
        let mut out = Vec::new();
        write_line(&mut out, &[b"a".to_vec(), b"[0, 1]".to_vec(), b"say \"hi\"".to_vec(), Vec::new()]);
        assert_eq!(out, b"a,\"[0, 1]\",\"say \"\"hi\"\"\",\n");
    }

    #[test]
    fn churn_is_about_one_percent_each_way() {
        let mut rng = SplitMix64::new(7);
        let mut shops: Vec<Shop> = (0..10_000).map(|_| Shop { identity: rng.next(), revision: 0 }).collect();
        let before: std::collections::HashSet<u64> = shops.iter().map(|s| s.identity).collect();
        churn(&mut shops, &mut rng);
        let after: std::collections::HashSet<u64> = shops.iter().map(|s| s.identity).collect();
        let removed = before.difference(&after).count();
        let added = after.difference(&before).count();
        let changed = shops.iter().filter(|s| s.revision > 0).count();
        assert!((50..150).contains(&removed), "{removed}");
        assert!((50..150).contains(&added), "{added}");
        assert!((350..650).contains(&changed), "{changed}");
    }
}
