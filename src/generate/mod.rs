//! `shoplake generate`: realistic daily exports of any table definition,
//! for the demo, the tests and the benchmarks, deterministic for the same
//! arguments. Rows churn from day to day (about 1% added, 1% removed, 5%
//! changed); `--dirty` adds the malformed lines real exports contain. What
//! each column holds comes from its kind and its `[columns.sample]` hints
//! ([`fields`]).

mod fields;
mod jsonl;

use chrono::NaiveDate;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::definition::{Column, SourceFormat, TableDefinition};
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// The tables whose exports are written.
    pub tables: Vec<&'static TableDefinition>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Rows on the first day.
    pub rows: u64,
    pub seed: u64,
    /// The revision every row starts at: another revision gives the same
    /// keys with other values.
    pub revision: u64,
    /// The source root; each table's export goes to its source pattern under it.
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

/// A row is its identity and how many times its values changed; its line
/// is derived from both, so a week of a million rows fits in a few
/// megabytes. Every table is generated from the same identities, so the
/// tables' keys match (a shop has a configuration and a usage row).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    pub identity: u64,
    pub revision: u64,
}

pub async fn run(storage: &Storage, config: &GenerateConfig) -> Result<Vec<GeneratedFile>> {
    let mut written = Vec::new();
    let mut jsonl_files = std::collections::BTreeSet::new();
    for def in &config.tables {
        // Tables sharing a JSONL file (a Bulk Operations result) are written together, once.
        let family: Vec<&TableDefinition> = match def.format {
            SourceFormat::Csv => vec![def],
            SourceFormat::Jsonl if !jsonl_files.insert(def.source_pattern.clone()) => continue,
            SourceFormat::Jsonl => config
                .tables
                .iter()
                .copied()
                .filter(|t| t.format == SourceFormat::Jsonl && t.source_pattern == def.source_pattern)
                .collect(),
        };
        let mut rng = SplitMix64::new(config.seed);
        let mut rows: Vec<Row> =
            (0..config.rows).map(|_| Row { identity: rng.next(), revision: config.revision }).collect();
        let mut date = config.from;
        while date <= config.to {
            if date > config.from {
                churn(&mut rows, &mut rng);
            }
            written.push(match def.format {
                SourceFormat::Csv => write_day(storage, config, def, &rows, date, &mut rng).await?,
                SourceFormat::Jsonl => jsonl::write_day(storage, config, &family, &rows, date, &mut rng).await?,
            });
            date = date.succ_opt().expect("dates before year 262143");
        }
    }
    Ok(written)
}

/// One day later: ~1% of rows go, ~5% change their values, ~1% come.
fn churn(rows: &mut Vec<Row>, rng: &mut SplitMix64) {
    rows.retain(|_| !rng.chance(0.01));
    for row in rows.iter_mut() {
        if rng.chance(0.05) {
            row.revision += 1;
        }
    }
    let added = (rows.len() as f64 * 0.01).round().max(1.0) as usize;
    rows.extend((0..added).map(|_| Row { identity: rng.next(), revision: 0 }));
}

async fn write_day(
    storage: &Storage,
    config: &GenerateConfig,
    def: &TableDefinition,
    rows: &[Row],
    date: NaiveDate,
    rng: &mut SplitMix64,
) -> Result<GeneratedFile> {
    let location = config.out.join(&def.source_file(date));
    let columns: Vec<&Column> = def.export_columns().collect();
    let mut sink = Sink::create(storage, &location).await?;
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    // Header texts as the export writes them: quoted when they hold a comma or a quote.
    write_line(&mut chunk, &columns.iter().map(|c| c.header.clone().into_bytes()).collect::<Vec<_>>());
    let mut lines = 0u64;
    let mut bytes = 0u64;
    // A grouped table's dirty lines keep their group: its column is the one emptied.
    let key = def.group_by.as_deref().unwrap_or_else(|| def.day_key());
    let group = def.group_by.as_ref().and_then(|g| columns.iter().position(|c| &c.name == g));
    for row in rows {
        for line in grouped(&columns, group, row, date) {
            if config.dirty && rng.chance(0.004) {
                write_line(&mut chunk, &fields::dirty(&columns, key, line.clone(), rng));
                lines += 1;
            }
            write_line(&mut chunk, &line);
            lines += 1;
        }
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

/// A row's lines: one, or in a grouped table (`group_by`) one to three (a
/// product's variants), all with the row's group value and only the first
/// with its `fill_down` columns.
fn grouped(columns: &[&Column], group: Option<usize>, row: &Row, date: NaiveDate) -> Vec<Vec<Vec<u8>>> {
    let first = fields::line(columns, row, date);
    let Some(group) = group else { return vec![first] };
    let group_value = first[group].clone();
    let mut lines = vec![first];
    for k in 1..1 + row.identity % 3 {
        let member = Row { identity: member_identity(row.identity, k), revision: row.revision };
        let mut line = fields::line(columns, &member, date);
        line[group] = group_value.clone();
        for i in (0..columns.len()).filter(|&i| columns[i].fill_down) {
            line[i] = Vec::new();
        }
        lines.push(line);
    }
    lines
}

/// The identity of a row's `k`-th member (a variant of a product).
pub(crate) fn member_identity(identity: u64, k: u64) -> u64 {
    SplitMix64::new(identity ^ k.wrapping_mul(0xD6E8_FEB8_6659_FD93)).next()
}

/// Appends one CSV line, quoting fields that need it (RFC 4180).
fn write_line(out: &mut Vec<u8>, fields: &[Vec<u8>]) {
    shoplake_parse::records::write_record(out, fields);
    out.push(b'\n');
}

/// A small, fast, seedable generator (SplitMix64): the same seed gives the
/// same exports on every machine.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
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
    fn lines_are_rfc4180() {
        let mut out = Vec::new();
        write_line(&mut out, &[b"a".to_vec(), b"[0, 1]".to_vec(), b"say \"hi\"".to_vec(), Vec::new()]);
        assert_eq!(out, b"a,\"[0, 1]\",\"say \"\"hi\"\"\",\n");
    }

    #[test]
    fn churn_is_about_one_percent_each_way() {
        let mut rng = SplitMix64::new(7);
        let mut shops: Vec<Row> = (0..10_000).map(|_| Row { identity: rng.next(), revision: 0 }).collect();
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
