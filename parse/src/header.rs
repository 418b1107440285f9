//! Matches an export's header with the columns a table reads: where each
//! column's values come from (a field of the line, the file's date, or
//! nothing when a declared column is missing and the policy allows it),
//! and which header fields are not loaded. The table's `unknown_columns`
//! and `missing_columns` policies are applied here (PRODUCT.md, "Schema
//! evolution"); the engine hands over its columns and policies.

/// A column the reader produces, as the header matching needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted<'a> {
    /// Read from the field whose header text is `header`.
    Field { name: &'a str, header: &'a str, nullable: bool },
    /// Not in the export: the date of the file.
    FileDate,
}

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

/// What to do with header fields no column reads, and with columns the
/// header lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policies {
    /// `unknown_columns = "ignore"` (else refused).
    pub ignore_unknown: bool,
    /// `missing_columns = "null"`: a nullable column the header lacks is
    /// loaded as null (else refused).
    pub null_missing: bool,
}

/// How the header maps onto the columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLayout {
    pub field_count: usize,
    /// One per wanted column, in their order.
    pub sources: Vec<ValueSource>,
    /// Header fields no column reads, not loaded.
    pub ignored: Vec<String>,
    /// Columns the export lacks, loaded as null.
    pub missing: Vec<String>,
}

/// Matches `header` (the export's field names) with `columns`; the
/// problems, each said once, when it cannot be loaded.
pub fn match_header(
    columns: &[Wanted<'_>],
    header: &[String],
    policies: Policies,
) -> Result<HeaderLayout, Vec<String>> {
    let mut problems = Vec::new();
    let mut sources = Vec::with_capacity(columns.len());
    let (mut missing, mut refused_missing) = (Vec::new(), Vec::new());
    for column in columns {
        let Wanted::Field { name, header: text, nullable } = *column else {
            sources.push(ValueSource::FileDate);
            continue;
        };
        match header.iter().position(|h| h == text) {
            Some(p) => sources.push(ValueSource::Field(p)),
            None if policies.null_missing && nullable => {
                sources.push(ValueSource::Missing);
                missing.push(name.to_string());
            }
            None if text == name => refused_missing.push(name.to_string()),
            None => refused_missing.push(format!("{text} (column {name})")),
        }
    }
    let declared = |h: &String| columns.iter().any(|c| matches!(c, Wanted::Field { header, .. } if *header == h));
    let unexpected: Vec<&str> = header.iter().filter(|h| !declared(h)).map(String::as_str).collect();
    // Each repeated field once, in the order it repeats.
    let mut duplicated: Vec<&str> = Vec::new();
    for (i, h) in header.iter().enumerate() {
        if header[..i].contains(h) && !duplicated.contains(&h.as_str()) {
            duplicated.push(h);
        }
    }
    if !refused_missing.is_empty() {
        let why = match policies.null_missing {
            false => "",
            true => " (not nullable, so missing_columns = \"null\" cannot fill them)",
        };
        problems.push(format!("missing columns: {}{why}", refused_missing.join(", ")));
    }
    let ignored = match policies.ignore_unknown {
        true => unexpected.iter().map(|s| s.to_string()).collect(),
        false if unexpected.is_empty() => Vec::new(),
        false => {
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
    match problems.is_empty() {
        true => Ok(HeaderLayout { field_count: header.len(), sources, ignored, missing }),
        false => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    const STRICT: Policies = Policies { ignore_unknown: false, null_missing: false };
    const LENIENT: Policies = Policies { ignore_unknown: true, null_missing: true };

    fn columns() -> Vec<Wanted<'static>> {
        vec![
            Wanted::Field { name: "id", header: "id", nullable: false },
            Wanted::Field { name: "sku", header: "Variant SKU", nullable: true },
            Wanted::FileDate,
        ]
    }

    #[test]
    fn every_column_finds_its_field_in_any_order() {
        let layout = match_header(&columns(), &texts(&["Variant SKU", "id"]), STRICT).unwrap();
        assert_eq!(layout.sources, [ValueSource::Field(1), ValueSource::Field(0), ValueSource::FileDate]);
    }

    #[test]
    fn a_column_missing_and_a_field_unknown_are_both_named_or_let_through() {
        let header = texts(&["id", "Surprise"]);
        let problems = match_header(&columns(), &header, STRICT).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("Variant SKU (column sku)"), "{problems:?}");
        assert!(problems[1].contains("unexpected columns: Surprise"), "{problems:?}");
        let layout = match_header(&columns(), &header, LENIENT).unwrap();
        assert_eq!((layout.ignored, layout.missing), (texts(&["Surprise"]), texts(&["sku"])));
        // Beside it: a column that is not nullable is refused whatever the policy.
        assert!(match_header(&columns(), &texts(&["Variant SKU"]), LENIENT).unwrap_err()[0].contains("not nullable"));
    }

    #[test]
    fn a_repeated_field_is_refused_once_whatever_the_policies() {
        let problems = match_header(&columns(), &texts(&["id", "x", "Variant SKU", "x", "x"]), LENIENT).unwrap_err();
        assert_eq!(problems, ["repeated columns: x"]);
    }
}
