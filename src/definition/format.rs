//! The export's format (`format` in table.toml): a CSV file with a header
//! line (the default), or JSON Lines, one object a line, as Shopify's Bulk
//! Operations write them. A JSONL table finds each column's value by a JSON
//! pointer (`path`, by default `/<name>`) and may take the lines of one
//! object type only (`object_type`), so one file feeds several tables.

use serde::{Deserialize, Serialize};

use super::{Column, MissingColumns, Records, UnknownColumns};

/// `format` in table.toml.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// RFC 4180 CSV with a header line.
    #[default]
    Csv,
    /// One JSON object a line, no header (`bulkOperationRunQuery` results).
    Jsonl,
}

impl SourceFormat {
    /// The file extension of a date's export when `source_pattern` is not given.
    pub fn extension(self) -> &'static str {
        match self {
            SourceFormat::Csv => "csv",
            SourceFormat::Jsonl => "jsonl",
        }
    }
}

/// What the table-level keys say, for the checks that depend on the format.
pub(super) struct Declared<'a> {
    pub format: SourceFormat,
    pub object_type: Option<&'a str>,
    pub records: Records,
    pub unknown_columns: UnknownColumns,
    pub missing_columns: MissingColumns,
    /// Each column's `header` and `path` as written, by position.
    pub locators: Vec<(Option<&'a str>, Option<&'a str>)>,
}

/// Checks the keys that belong to one format only, and sets each JSONL
/// column's `header` to its JSON pointer (the name its value is found by).
/// `columns` are the resolved columns, in declaration order.
pub(super) fn resolve(declared: &Declared<'_>, columns: &mut [Column], problem: &mut dyn FnMut(String, String)) {
    let mut add = |key: &str, message: &str| problem(key.to_string(), message.to_string());
    match declared.format {
        SourceFormat::Csv => {
            if declared.object_type.is_some() {
                add("object_type", "object_type picks lines of a JSONL export: it needs format = \"jsonl\"");
            }
            for (i, (_, path)) in declared.locators.iter().enumerate() {
                if path.is_some() {
                    add(
                        &format!("columns[{i}].path"),
                        "path is a JSON pointer: it needs format = \"jsonl\" (a CSV column's is `header`)",
                    );
                }
            }
        }
        SourceFormat::Jsonl => {
            if declared.records != Records::Lines {
                add("records", "a JSONL export is one object a line: records = \"quoted\" is for CSV");
            }
            if declared.unknown_columns != UnknownColumns::default()
                || declared.missing_columns != MissingColumns::default()
            {
                add(
                    "unknown_columns",
                    "unknown_columns and missing_columns are about a CSV header: a JSONL line's keys the definition \
                     does not name are not read, and an absent path is null",
                );
            }
            if declared.object_type.is_some_and(|t| t.is_empty() || t.contains('/')) {
                add("object_type", "an object type is a GraphQL type name such as Product or ProductVariant");
            }
            for (i, (header, path)) in declared.locators.iter().enumerate() {
                if header.is_some() {
                    add(&format!("columns[{i}].header"), "a JSONL export has no header: give the value's `path`");
                }
                let Some(column) = columns.get_mut(i) else { continue };
                if !column.in_export {
                    if path.is_some() {
                        add(&format!("columns[{i}].path"), "a column not read from the export has no path");
                    }
                    continue;
                }
                match path {
                    Some(path) if !path.starts_with('/') || path.len() < 2 => add(
                        &format!("columns[{i}].path"),
                        &format!("`{path}` is not a JSON pointer to a value (e.g. /sku or /featuredImage/url)"),
                    ),
                    Some(path) => column.header = path.to_string(),
                    None => column.header = format!("/{}", column.name),
                }
            }
        }
    }
}

/// The object type of a Bulk Operations line, from its `__typename` and
/// `id` values: the type name when the line has one, else the type its id
/// names (`gid://shopify/ProductVariant/1`).
pub fn object_type<'a>(typename: Option<&'a str>, id: Option<&'a str>) -> Option<&'a str> {
    typename.or_else(|| gid_type(id?))
}

/// A JSON pointer's reference token as the key it names (`~1` is `/`, `~0` is `~`).
pub fn pointer_key(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The type a GID names: `ProductVariant` of `gid://shopify/ProductVariant/1`.
pub fn gid_type(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("gid://")?;
    let mut parts = rest.split('/');
    let (_app, kind) = (parts.next()?, parts.next()?);
    parts.next().filter(|n| !n.is_empty())?;
    (!kind.is_empty()).then_some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_comes_from_typename_first_then_the_gid() {
        assert_eq!(object_type(None, Some("gid://shopify/ProductVariant/12")), Some("ProductVariant"));
        assert_eq!(object_type(Some("Product"), Some("gid://shopify/Collection/3")), Some("Product"));
        // Beside it: no type to tell.
        assert_eq!(object_type(None, Some("12")), None);
        assert_eq!(object_type(None, Some("gid://shopify/Product/")), None);
        assert_eq!(object_type(None, None), None);
    }

    #[test]
    fn pointer_tokens_are_unescaped() {
        assert_eq!(pointer_key("a~1b~0c"), "a/b~c");
        assert_eq!(pointer_key("sku"), "sku");
    }
}
