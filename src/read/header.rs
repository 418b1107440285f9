//! Matches the export's header with the definition: where each column the
//! reader produces comes from (a field of the line, the file's date, or
//! nothing when a declared column is missing and the definition allows it),
//! and which header columns are not loaded. The table's `unknown_columns`
//! and `missing_columns` policies are applied here (PRODUCT.md, "Schema
//! evolution").

use crate::definition::{Kind, MissingColumns, TableDefinition, UnknownColumns};
pub use shoplake_parse::header::{HeaderLayout, ValueSource};
use shoplake_parse::header::{Policies, Wanted};

/// Matches the export's header with `def`'s columns (the matching itself is
/// `shoplake_parse::header`, fuzzed): the layout, or every problem at once.
pub fn match_definition(def: &TableDefinition, header: &[String]) -> Result<HeaderLayout, String> {
    let columns: Vec<Wanted<'_>> = super::read_columns(def)
        .map(|column| match column.is_from_export() {
            true => Wanted::Field { name: &column.name, header: &column.header, nullable: column.nullable },
            false => {
                debug_assert_eq!(column.kind, Kind::FileDate);
                Wanted::FileDate
            }
        })
        .collect();
    let policies = Policies {
        ignore_unknown: def.unknown_columns == UnknownColumns::Ignore,
        null_missing: def.missing_columns == MissingColumns::Null,
    };
    shoplake_parse::header::match_header(&columns, header, policies)
        .map_err(|problems| format!("the header does not match table {}: {}", def.name, problems.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::built_in;

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
        let layout = match_definition(def(), &shuffled).unwrap();
        assert_eq!(layout.sources[0], ValueSource::Field(names().len() - 1), "any order is fine");

        let mut missing = names();
        missing.retain(|n| n != "showing_logo");
        let err = match_definition(def(), &missing).err().unwrap();
        assert!(err.contains("missing columns: showing_logo"), "{err}");

        let mut extra = names();
        extra.push("surprise".into());
        let err = match_definition(def(), &extra).err().unwrap();
        assert!(err.contains("unexpected columns: surprise"), "{err}");

        // A column added and one renamed at once: both are named.
        let mut renamed = names();
        renamed.retain(|n| n != "showing_logo");
        renamed.push("logo_shown".into());
        let err = match_definition(def(), &renamed).err().unwrap();
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
        let layout = match_definition(&lenient, &header).unwrap();
        assert_eq!(layout.ignored, vec!["surprise"]);
        assert_eq!(layout.missing, vec!["showing_logo"]);
        assert!(layout.sources.contains(&ValueSource::Missing));

        // Beside it: a missing column that is not nullable is still refused.
        let mut no_id = names();
        no_id.retain(|n| n != "application_id");
        let err = match_definition(&lenient, &no_id).err().unwrap();
        assert!(err.contains("missing columns: application_id (not nullable"), "{err}");
        // And a repeated column is refused whatever the policies.
        let mut twice = names();
        twice.push("id".into());
        assert!(match_definition(&lenient, &twice).err().unwrap().contains("repeated columns: id"));
    }
}
