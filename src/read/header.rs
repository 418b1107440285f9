//! Matches the export's header with the definition: where each column the
//! reader produces comes from (a field of the line, the file's date, or
//! nothing when a declared column is missing and the definition allows it),
//! and which header columns are not loaded. The table's `unknown_columns`
//! and `missing_columns` policies are applied here (PRODUCT.md, "Schema
//! evolution").

use crate::definition::{Kind, MissingColumns, TableDefinition, UnknownColumns};

/// Where one column's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSource {
    /// The field at this position of each line.
    Field(usize),
    /// The date of the file (a file_date not in the export).
    FileDate,
    /// Missing from the export, loaded as null.
    Missing,
}

/// How the header maps onto the definition.
#[derive(Debug, Clone)]
pub struct HeaderLayout {
    pub field_count: usize,
    /// One per column the reader produces, in definition order.
    pub sources: Vec<ValueSource>,
    /// Header columns the definition does not declare, not loaded.
    pub ignored: Vec<String>,
    /// Declared columns the export lacks, loaded as null.
    pub missing: Vec<String>,
}

impl HeaderLayout {
    pub fn match_definition(def: &TableDefinition, header: &[String]) -> Result<Self, String> {
        let mut problems = Vec::new();
        let mut sources = Vec::new();
        let (mut missing, mut refused_missing) = (Vec::new(), Vec::new());
        for column in super::read_columns(def) {
            if !column.is_from_export() {
                debug_assert_eq!(column.kind, Kind::FileDate);
                sources.push(ValueSource::FileDate);
                continue;
            }
            match header.iter().position(|h| *h == column.header) {
                Some(p) => sources.push(ValueSource::Field(p)),
                None if def.missing_columns == MissingColumns::Null && column.nullable => {
                    sources.push(ValueSource::Missing);
                    missing.push(column.name.clone());
                }
                None if column.header == column.name => refused_missing.push(column.name.clone()),
                None => refused_missing.push(format!("{} (column {})", column.header, column.name)),
            }
        }
        let unexpected: Vec<&str> =
            header.iter().filter(|h| !def.export_columns().any(|c| c.header == **h)).map(String::as_str).collect();
        let mut duplicated: Vec<&str> =
            header.iter().enumerate().filter(|(i, h)| header[..*i].contains(h)).map(|(_, h)| h.as_str()).collect();
        duplicated.dedup();
        if !refused_missing.is_empty() {
            let why = match def.missing_columns {
                MissingColumns::Refuse => "",
                MissingColumns::Null => " (not nullable, so missing_columns = \"null\" cannot fill them)",
            };
            problems.push(format!("missing columns: {}{why}", refused_missing.join(", ")));
        }
        let ignored = match def.unknown_columns {
            UnknownColumns::Ignore => unexpected.iter().map(|s| s.to_string()).collect(),
            UnknownColumns::Refuse if unexpected.is_empty() => Vec::new(),
            UnknownColumns::Refuse => {
                problems.push(format!(
                    "unexpected columns: {} (declare them in table.toml, or set unknown_columns = \"ignore\")",
                    unexpected.join(", ")
                ));
                Vec::new()
            }
        };
        if !duplicated.is_empty() {
            problems.push(format!("repeated columns: {}", duplicated.join(", ")));
        }
        if problems.is_empty() {
            Ok(HeaderLayout { field_count: header.len(), sources, ignored, missing })
        } else {
            Err(format!("the header does not match table {}: {}", def.name, problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::built_in;
    use crate::definition::{MissingColumns, UnknownColumns};

    fn def() -> &'static TableDefinition {
        built_in("shopify_configuration")
    }

    fn names() -> Vec<String> {
        def().export_columns().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn the_header_must_hold_exactly_the_export_columns_by_default() {
        let mut shuffled = names();
        shuffled.reverse();
        let layout = HeaderLayout::match_definition(def(), &shuffled).unwrap();
        assert_eq!(layout.sources[0], ValueSource::Field(names().len() - 1), "any order is fine");

        let mut missing = names();
        missing.retain(|n| n != "showing_logo");
        let err = HeaderLayout::match_definition(def(), &missing).err().unwrap();
        assert!(err.contains("missing columns: showing_logo"), "{err}");

        let mut extra = names();
        extra.push("surprise".into());
        let err = HeaderLayout::match_definition(def(), &extra).err().unwrap();
        assert!(err.contains("unexpected columns: surprise"), "{err}");

        // A column added and one renamed at once: both are named.
        let mut renamed = names();
        renamed.retain(|n| n != "showing_logo");
        renamed.push("logo_shown".into());
        let err = HeaderLayout::match_definition(def(), &renamed).err().unwrap();
        assert!(
            err.contains("missing columns: showing_logo") && err.contains("unexpected columns: logo_shown"),
            "{err}"
        );
    }

    #[test]
    fn policies_ignore_unknown_and_null_missing_columns() {
        let lenient = TableDefinition {
            unknown_columns: UnknownColumns::Ignore,
            missing_columns: MissingColumns::Null,
            ..def().clone()
        };
        let mut header = names();
        header.retain(|n| n != "showing_logo");
        header.push("surprise".into());
        let layout = HeaderLayout::match_definition(&lenient, &header).unwrap();
        assert_eq!(layout.ignored, vec!["surprise"]);
        assert_eq!(layout.missing, vec!["showing_logo"]);
        assert!(layout.sources.contains(&ValueSource::Missing));

        // Beside it: a missing column that is not nullable is still refused.
        let mut no_id = names();
        no_id.retain(|n| n != "application_id");
        let err = HeaderLayout::match_definition(&lenient, &no_id).err().unwrap();
        assert!(err.contains("missing columns: application_id (not nullable"), "{err}");
        // And a repeated column is refused whatever the policies.
        let mut twice = names();
        twice.push("id".into());
        assert!(HeaderLayout::match_definition(&lenient, &twice).err().unwrap().contains("repeated columns: id"));
    }
}
