//! The file-shaped form of `table.toml` (`TableFile`), refused on any
//! unknown key, and the one conversion into a [`TableDefinition`] that does
//! the checks spanning fields, collecting every problem with its key path.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::sample::Sample;
use datafusion::arrow::datatypes::DataType;

use super::{types, Column, Kind, MissingColumns, Records, TableDefinition, UnknownColumns, DATE_PLACEHOLDER};
use shoplake_parse::framing::Framing;
use shoplake_parse::values::Conventions;

use super::conventions;
use super::format::{self, Declared, SourceFormat};

/// `table.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableFile {
    name: String,
    #[serde(default)]
    description: String,
    key: Vec<String>,
    partition_by: String,
    /// The export of a date under `--source` (default `{date}.csv`).
    source_pattern: Option<String>,
    /// The table under the lake root (default: the name).
    table_path: Option<String>,
    #[serde(default)]
    unknown_columns: UnknownColumns,
    #[serde(default)]
    missing_columns: MissingColumns,
    /// `csv` (the default) or `jsonl`.
    #[serde(default)]
    format: SourceFormat,
    /// A JSONL table's lines: those of this object type only.
    object_type: Option<String>,
    #[serde(default)]
    records: Records,
    /// Bounds of a quoted record (`records = "quoted"` only).
    max_record_lines: Option<u32>,
    max_record_bytes: Option<u64>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    /// The column naming a group of rows whose `fill_down` columns only its first row holds.
    group_by: Option<String>,
    /// Where the table is registered (Glue, Unity Catalog) unless the command line says.
    catalog: Option<super::registry::CatalogBlock>,
    columns: Vec<ColumnFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnFile {
    name: String,
    /// The export's header text, when it is not the name.
    header: Option<String>,
    /// A JSONL table's JSON pointer to the value (default `/<name>`).
    path: Option<String>,
    kind: Kind,
    nullable: Option<bool>,
    #[serde(rename = "type")]
    type_name: Option<String>,
    #[serde(default = "default_true")]
    dictionary: bool,
    precision: Option<u8>,
    scale: Option<i8>,
    time_zone: Option<String>,
    in_export: Option<bool>,
    #[serde(default)]
    sample: Sample,
    /// How the export writes this column's values (tables/README.md).
    strip_prefix: Option<String>,
    #[serde(default)]
    null_values: Vec<String>,
    #[serde(default)]
    true_values: Vec<String>,
    #[serde(default)]
    false_values: Vec<String>,
    timestamp_format: Option<String>,
    /// `shoplake erase --where <column>=<value>` may erase by this column
    /// (a shop's domain, an email): docs/privacy.md.
    #[serde(default)]
    erasable: bool,
    /// Personal data: hashed, masked or dropped before anything is written (`crate::pii`).
    pii: Option<super::Pii>,
    /// Empty on a group's later rows, filled from its first row (the table's `group_by`).
    #[serde(default)]
    fill_down: bool,
}

fn default_true() -> bool {
    true
}

/// The fingerprint column a definition gets when it declares none.
pub const DEFAULT_ROW_HASH: &str = "_row_hash";

/// One problem found in a definition: the key path it is at, and what is wrong.
pub(crate) type KeyProblem = (String, String);

/// The problems found so far, each at its key path.
#[derive(Default)]
struct Problems(Vec<KeyProblem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push((key.into(), message.into()));
    }
}

impl TableFile {
    /// Resolves the file into a definition, or every problem found.
    pub(crate) fn resolve(
        self,
        transform_sql: Option<String>,
        origin: String,
    ) -> Result<TableDefinition, Vec<KeyProblem>> {
        let mut problems = Problems::default();
        if !is_identifier(&self.name) {
            problems.add("name", format!("`{}` is not a lower-case SQL name (a-z, 0-9, _)", self.name));
        }
        let mut columns: Vec<Column> = Vec::with_capacity(self.columns.len() + 1);
        for (i, c) in self.columns.iter().enumerate() {
            if columns.iter().any(|seen| seen.name == c.name) {
                problems.add(format!("columns[{i}].name"), format!("column {} is declared twice", c.name));
                continue;
            }
            let in_key = self.key.contains(&c.name);
            if let Some(column) = resolve_column(i, c, in_key, &mut problems) {
                // Two columns read from the export cannot be found by one header text.
                let shared = |seen: &&Column| seen.in_export && seen.header == column.header;
                if let Some(seen) = columns.iter().find(shared).filter(|_| column.in_export) {
                    problems.add(
                        format!("columns[{i}].header"),
                        format!("header text {:?} is column {}'s too", column.header, seen.name),
                    );
                }
                columns.push(column);
            }
        }
        let declared = Declared {
            format: self.format,
            object_type: self.object_type.as_deref(),
            records: self.records,
            unknown_columns: self.unknown_columns,
            missing_columns: self.missing_columns,
            locators: self.columns.iter().map(|c| (c.header.as_deref(), c.path.as_deref())).collect(),
        };
        // Resolved columns line up with the file's only when none was dropped.
        if columns.len() == self.columns.len() {
            format::resolve(&declared, &mut columns, &mut |key, message| problems.add(key, message));
        }
        self.check_key_and_partition(&columns, &mut problems);
        self.check_groups(&columns, &mut problems);
        with_row_hash(&mut columns, &mut problems);
        if !columns.iter().any(|c| c.in_export) {
            problems.add("columns", "no column is read from the export");
        }
        let source_pattern =
            self.source_pattern.clone().unwrap_or_else(|| format!("{DATE_PLACEHOLDER}.{}", self.format.extension()));
        if let Err(e) = check_relative_path(&source_pattern) {
            problems.add("source_pattern", e);
        } else if source_pattern.matches(DATE_PLACEHOLDER).count() != 1 {
            problems.add("source_pattern", format!("`{source_pattern}` must hold {DATE_PLACEHOLDER} once"));
        }
        let table_path = self.table_path.clone().unwrap_or_else(|| self.name.clone());
        if let Err(e) = check_relative_path(&table_path) {
            problems.add("table_path", e);
        }
        let framing = self.framing(&mut problems);
        let catalog = match self.catalog.as_ref().map(super::registry::CatalogBlock::resolve).transpose() {
            Ok(catalog) => catalog.flatten(),
            Err(found) => {
                found.into_iter().for_each(|(key, message)| problems.add(key, message));
                None
            }
        };
        for (i, c) in self.columns.iter().enumerate() {
            if c.sample.format == Some(super::sample::TextFormat::Html) && self.records == Records::Lines {
                problems.add(format!("columns[{i}].sample.format"), "html spans lines: it needs records = \"quoted\"");
            }
        }
        // missing_columns = "null" needs no check: not-null columns are still
        // refused when missing, per load.
        if !problems.0.is_empty() {
            return Err(problems.0);
        }
        Ok(TableDefinition {
            name: self.name,
            description: self.description,
            key: self.key,
            partition_by: self.partition_by,
            properties: self.properties,
            columns,
            transform_sql: transform_sql.unwrap_or_else(|| "SELECT * FROM export".to_string()),
            checks: Vec::new(),
            source_pattern,
            table_path,
            unknown_columns: self.unknown_columns,
            missing_columns: self.missing_columns,
            framing,
            format: self.format,
            object_type: self.object_type,
            group_by: self.group_by,
            catalog,
            origin,
            fingerprint: String::new(),
        })
    }

    /// `group_by` names a column read from the export; `fill_down` columns
    /// are read from the export, need a group, and are not the group's own.
    fn check_groups(&self, columns: &[Column], problems: &mut Problems) {
        if let Some(group) = &self.group_by {
            if !columns.iter().any(|c| c.name == *group && c.in_export) {
                problems.add("group_by", format!("`{group}` is not a column read from the export"));
            }
        }
        for (i, c) in self.columns.iter().enumerate().filter(|(_, c)| c.fill_down) {
            let read = columns.iter().any(|seen| seen.name == c.name && seen.in_export);
            match &self.group_by {
                None => problems.add(format!("columns[{i}].fill_down"), "fill_down needs the table's group_by"),
                Some(group) if *group == c.name => problems
                    .add(format!("columns[{i}].fill_down"), "the group_by column names the group: it is not filled"),
                Some(_) if !read => {
                    problems.add(format!("columns[{i}].fill_down"), "only a column read from the export is filled")
                }
                Some(_) => {}
            }
        }
    }

    /// The framing of `records`, its bounds checked: they are for quoted
    /// records only, and a record spans at least one line and one byte.
    fn framing(&self, problems: &mut Problems) -> Framing {
        let bounds =
            [("max_record_lines", self.max_record_lines.map(u64::from)), ("max_record_bytes", self.max_record_bytes)];
        for (key, value) in bounds {
            match value {
                Some(_) if self.records == Records::Lines => {
                    problems.add(key, "bounds a quoted record: it needs records = \"quoted\"")
                }
                Some(0) => problems.add(key, "must be at least 1"),
                _ => {}
            }
        }
        match self.records {
            Records::Lines => Framing::Lines,
            Records::Quoted => Framing::Quoted {
                max_lines: self.max_record_lines.unwrap_or(super::DEFAULT_MAX_RECORD_LINES).max(1),
                max_bytes: usize::try_from(self.max_record_bytes.unwrap_or(super::DEFAULT_MAX_RECORD_BYTES))
                    .unwrap_or(usize::MAX)
                    .max(1),
            },
        }
    }

    /// The key is one text column (read, or derived as a string) plus the
    /// partition column, which is the file date.
    fn check_key_and_partition(&self, columns: &[Column], problems: &mut Problems) {
        for (i, name) in self.key.iter().enumerate() {
            if !columns.iter().any(|c| &c.name == name) && !self.columns.iter().any(|c| &c.name == name) {
                problems.add(format!("key[{i}]"), format!("{name} is not a column"));
            }
        }
        match columns.iter().find(|c| c.name == self.partition_by) {
            None => problems.add("partition_by", format!("{} is not a column", self.partition_by)),
            Some(c) if c.kind != Kind::FileDate => problems.add(
                "partition_by",
                format!("the partition column {} must be the file date (kind = \"file_date\")", c.name),
            ),
            Some(_) => {}
        }
        if !self.key.contains(&self.partition_by) {
            problems.add("key", format!("the key must include the partition column {}", self.partition_by));
        }
        let row_key: Vec<&String> = self.key.iter().filter(|k| **k != self.partition_by).collect();
        match row_key.as_slice() {
            [one] => {
                // A key spanning several fields (a product's handle and a
                // variant's SKU) is a derived text column transform.sql makes.
                if let Some(c) = columns.iter().find(|c| &&c.name == one) {
                    let derived_text = c.kind == Kind::Derived && c.data_type == DataType::Utf8;
                    if c.kind != Kind::Text && !derived_text {
                        problems
                            .add("key", format!("the key column {one} must be a text column (or a derived string)"));
                    }
                }
            }
            _ => problems
                .add("key", "the key is one text column plus the partition column (e.g. [\"id\", \"export_date\"])"),
        }
        let file_dates: Vec<&str> =
            columns.iter().filter(|c| c.kind == Kind::FileDate).map(|c| c.name.as_str()).collect();
        if file_dates.len() > 1 {
            problems.add("columns", format!("one file_date column only (found {})", file_dates.join(", ")));
        }
    }
}

impl ColumnFile {
    fn conventions(&self) -> Conventions {
        Conventions {
            strip_prefix: self.strip_prefix.clone(),
            null_values: self.null_values.clone(),
            true_values: self.true_values.clone(),
            false_values: self.false_values.clone(),
            timestamp_format: self.timestamp_format.clone(),
        }
    }
}

/// Column `i` of the file, resolved, or `None` (its problems noted) when
/// its type cannot be known.
fn resolve_column(i: usize, c: &ColumnFile, in_key: bool, problems: &mut Problems) -> Option<Column> {
    let at = |field: &str| format!("columns[{i}].{field}");
    if !is_identifier(&c.name) {
        problems.add(at("name"), format!("`{}` is not a lower-case SQL name (a-z, 0-9, _)", c.name));
    }
    let data_type = resolve_type(c, &at, problems)?;
    let time_zone = match (&c.time_zone, c.kind) {
        (None, _) => None,
        (Some(zone), Kind::Timestamp) => match zone.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                problems.add(at("time_zone"), format!("`{zone}` is not a time zone name such as Europe/Paris or UTC"));
                None
            }
        },
        (Some(_), _) => {
            problems.add(at("time_zone"), "`time_zone` is for timestamp columns");
            None
        }
    };
    let in_export = match (c.in_export, c.kind) {
        (_, Kind::Derived | Kind::RowHash) => {
            if c.in_export == Some(true) {
                problems.add(at("in_export"), format!("a {} column is never in the export", kind_name(c.kind)));
            }
            false
        }
        (Some(false), Kind::FileDate) => false,
        (Some(false), _) => {
            problems.add(at("in_export"), "only a file_date column may be left out of the export");
            true
        }
        (_, _) => true,
    };
    for message in c.sample.problems() {
        problems.add(at("sample"), message);
    }
    if in_key && c.nullable == Some(true) {
        problems.add(at("nullable"), format!("key column {} cannot be nullable", c.name));
    }
    let header = c.header.clone().unwrap_or_else(|| c.name.clone());
    if c.header.is_some() && !in_export {
        problems.add(at("header"), "a column not read from the export has no header text");
    } else if header.trim() != header || header.is_empty() {
        problems.add(
            at("header"),
            format!("{header:?}: header texts are trimmed when read, so cannot be empty or start or end with spaces"),
        );
    }
    if c.erasable && !matches!(c.kind, Kind::Text) {
        problems.add(at("erasable"), "only a text column can be erasable (the key is erasable by --key)");
    }
    if let Some(pii) = c.pii {
        if !matches!(c.kind, Kind::Text) {
            problems.add(at("pii"), "only a text column can be pii");
        } else if in_key {
            problems.add(
                at("pii"),
                "a key or partition column cannot be pii: it names the row (to remove a person, erase by --key)",
            );
        } else if c.erasable {
            problems.add(at("pii"), "a pii column is not erasable: the table never holds its values to match");
        } else if pii == super::Pii::Drop && c.nullable == Some(false) {
            problems.add(at("pii"), "pii = \"drop\" writes null: the column must be nullable");
        }
    }
    let on = conventions::On { name: &c.name, kind: c.kind, in_export, has_time_zone: c.time_zone.is_some() };
    let (conventions, found) = conventions::resolve(c.conventions(), on);
    for (key, message) in found {
        problems.add(at(key), message);
    }
    Some(Column {
        name: c.name.clone(),
        header,
        kind: c.kind,
        nullable: c.nullable.unwrap_or(true) && !in_key,
        data_type,
        dictionary: c.dictionary,
        in_export,
        time_zone,
        sample: c.sample.clone(),
        conventions,
        erasable: c.erasable,
        pii: c.pii,
        fill_down: c.fill_down,
    })
}

/// A column's Arrow type: implied by its kind (and a decimal's precision
/// and scale), or declared with `type` (a derived column), never both
/// contradicting each other.
fn resolve_type(c: &ColumnFile, at: &dyn Fn(&str) -> String, problems: &mut Problems) -> Option<DataType> {
    let decimal = match (c.kind, c.precision, c.scale) {
        (Kind::Decimal, Some(p), Some(s)) => match types::check_decimal(p, s) {
            Ok(()) => Some((p, s)),
            Err(e) => {
                problems.add(at("precision"), e);
                None
            }
        },
        (Kind::Decimal, _, _) => {
            problems.add(at("precision"), format!("decimal column {} needs `precision` and `scale`", c.name));
            None
        }
        (_, None, None) => None,
        (_, _, _) => {
            problems.add(at("precision"), "`precision` and `scale` are for decimal columns");
            None
        }
    };
    let declared = match c.type_name.as_deref().map(types::parse).transpose() {
        Ok(declared) => declared,
        Err(e) => {
            problems.add(at("type"), e);
            return None;
        }
    };
    match (types::of_kind(c.kind, decimal), declared) {
        (Some(implied), None) => Some(implied),
        (Some(implied), Some(declared)) if implied == declared => Some(implied),
        (Some(implied), Some(declared)) => {
            problems.add(
                at("type"),
                format!(
                    "column {}: type {} contradicts its kind ({})",
                    c.name,
                    types::type_name(&declared),
                    types::type_name(&implied)
                ),
            );
            None
        }
        (None, Some(declared)) => Some(declared),
        (None, None) if c.kind == Kind::Decimal => None,
        (None, None) => {
            problems.add(at("type"), format!("derived column {} needs a `type`", c.name));
            None
        }
    }
}

/// The row fingerprint column: the one declared, else `_row_hash` added.
fn with_row_hash(columns: &mut Vec<Column>, problems: &mut Problems) {
    match columns.iter().filter(|c| c.kind == Kind::RowHash).count() {
        0 if !columns.iter().any(|c| c.name == DEFAULT_ROW_HASH) => columns.push(Column {
            name: DEFAULT_ROW_HASH.into(),
            header: DEFAULT_ROW_HASH.into(),
            kind: Kind::RowHash,
            nullable: true,
            data_type: DataType::Binary,
            dictionary: false,
            in_export: false,
            time_zone: None,
            sample: Sample::default(),
            conventions: Default::default(),
            erasable: false,
            pii: None,
            fill_down: false,
        }),
        0 => problems.add(
            "columns",
            format!("{DEFAULT_ROW_HASH} is the row fingerprint's name: declare it with kind = \"row_hash\""),
        ),
        1 => {}
        _ => problems.add("columns", "one row_hash column only"),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Derived => "derived",
        Kind::RowHash => "row_hash",
        _ => "value",
    }
}

/// A lower-case SQL identifier: query registers tables and columns by it.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_')) && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// A path below a root: not empty, not absolute, no `..`, no URI scheme.
fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') || path.contains("://") {
        return Err(format!("`{path}` must be a relative path"));
    }
    if path.split('/').any(|segment| segment == ".." || segment.is_empty()) {
        return Err(format!("`{path}` must not hold `..` or empty segments"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml_text: &str) -> Result<TableDefinition, Vec<KeyProblem>> {
        toml::from_str::<TableFile>(toml_text).map_err(|e| vec![("".into(), e.to_string())])?.resolve(None, "t".into())
    }

    const MINIMAL: &str = r#"
name = "t"
key = ["id", "day"]
partition_by = "day"
[[columns]]
name = "id"
kind = "text"
[[columns]]
name = "day"
kind = "file_date"
in_export = false
"#;

    #[test]
    fn a_minimal_definition_gets_the_defaults() {
        let def = resolve(MINIMAL).unwrap();
        assert_eq!(def.row_hash_column(), DEFAULT_ROW_HASH, "a fingerprint column is added");
        assert_eq!(def.source_pattern, "{date}.csv");
        assert_eq!(def.table_path, "t");
        assert_eq!(def.export_columns().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["id"]);
        assert!(!def.column("id").unwrap().nullable, "key columns are not null");
        assert_eq!(def.transform_sql, "SELECT * FROM export");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = MINIMAL.replace("partition_by = \"day\"", "partition_by = \"id\"\nsource_pattern = \"/abs.csv\"")
            + "[[columns]]\nname = \"amount\"\nkind = \"decimal\"\n[[columns]]\nname = \"at\"\nkind = \"count\"\ntime_zone = \"Mars/Olympus\"\n";
        let problems = resolve(&text).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        for expected in ["partition_by", "key", "source_pattern", "columns[2].precision", "columns[3].time_zone"] {
            assert!(keys.contains(&expected), "{expected} missing from {problems:?}");
        }
    }

    #[test]
    fn key_columns_must_exist_be_text_and_not_nullable() {
        let nullable = MINIMAL.replacen("kind = \"text\"", "kind = \"text\"\nnullable = true", 1);
        assert!(resolve(&nullable).unwrap_err().iter().any(|(k, m)| k == "columns[0].nullable" && m.contains("key")));
        let missing = MINIMAL.replace("key = [\"id\", \"day\"]", "key = [\"shop\", \"day\"]");
        assert!(resolve(&missing)
            .unwrap_err()
            .iter()
            .any(|(k, m)| k == "key[0]" && m.contains("shop is not a column")));
        let count = MINIMAL.replacen("kind = \"text\"", "kind = \"count\"", 1);
        assert!(resolve(&count).unwrap_err().iter().any(|(_, m)| m.contains("must be a text column")));
    }

    #[test]
    fn a_typo_fails_loudly() {
        assert!(resolve(&MINIMAL.replacen("kind = \"text\"", "kind = \"text\"\nnulable = false", 1)).is_err());
        assert!(resolve(&MINIMAL.replacen("kind = \"text\"", "kind = \"txt\"", 1)).is_err());
        assert!(resolve(&(MINIMAL.to_string() + "[columns.sample]\nvalus = [\"a\"]\n")).is_err());
    }
}
