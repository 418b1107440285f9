//! One table as a command works on it: its definition, and where its Delta
//! table and its rejects table live. Resolved once from the command line
//! (`--table-name`, `--lake`, `--table`, `--rejects-table`) before anything
//! runs.

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::storage::Location;

/// Appended to a table's location to name its rejects table.
pub const REJECTS_SUFFIX: &str = "_rejects";

#[derive(Debug, Clone)]
pub struct TableTarget {
    pub def: &'static TableDefinition,
    pub table: Location,
    pub rejects: Location,
}

impl TableTarget {
    /// The table of `def` under `lake` (at its `table_path`) unless `table`
    /// names it; its rejects table beside it unless `rejects` names one.
    pub fn resolve(
        def: &'static TableDefinition,
        lake: &Location,
        table: Option<&str>,
        rejects: Option<&str>,
    ) -> Result<TableTarget> {
        let table = match table {
            Some(uri) => Location::parse(uri)?,
            None => lake.join(&def.table_path),
        };
        let rejects = match rejects {
            Some(uri) => Location::parse(uri)?,
            None => table.with_suffix(REJECTS_SUFFIX),
        };
        if table == rejects {
            return Err(Error::usage(Stage::CommandLine, "--rejects-table", "must not be the table itself"));
        }
        Ok(TableTarget { def, table, rejects })
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_live_under_the_lake_unless_named() {
        let def = crate::catalog::built_in("shopify_configuration");
        let lake = Location::parse("./lake/").unwrap();
        let t = TableTarget::resolve(def, &lake, None, None).unwrap();
        assert_eq!(t.table, Location::parse("lake/shopify_configuration").unwrap(), "today's default");
        assert_eq!(t.rejects, Location::parse("lake/shopify_configuration_rejects").unwrap());
        let t = TableTarget::resolve(def, &lake, Some("s3://b/t"), None).unwrap();
        assert_eq!(t.rejects, Location::parse("s3://b/t_rejects").unwrap());
        assert!(TableTarget::resolve(def, &lake, Some("/x"), Some("/x/")).is_err());
    }
}
