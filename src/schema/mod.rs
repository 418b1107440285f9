//! Schema evolution by declaration (PRODUCT.md, "Schema evolution"): how a
//! table's schema and properties differ from its definition, what can be
//! changed in place, and the row fingerprint that goes with it.
//!
//! In place (no data file rewritten; the metadata goes in the next load's
//! commit, or in a commit of its own with `schema apply`): a nullable
//! column added to the definition (marked in the table's schema as added,
//! so fingerprints encode it only when it holds a value: [`ValueHasher`]),
//! and changed table properties. Refused before anything is read or
//! written (exit 2, with what differs and how to migrate): a type change,
//! a removed or renamed column, a nullability change, a new not-null
//! column, a key or partition change. deltalake 1.x writes neither column
//! mapping (rename, drop) nor type widening. A table shoplake created that
//! never held a row (a first load that failed on a definition being
//! written) has nothing to keep consistent: it takes the definition whole.

pub mod apply;
pub mod open;

use std::collections::BTreeMap;

use deltalake::kernel::{DataType as DeltaType, MetadataValue, StructField};
use deltalake::DeltaTable;
use serde::Serialize;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::row_hash::{ValueHasher, ADDED_COLUMN};
use crate::storage::Location;
use crate::table::spec::TableSpec;
pub use crate::table::spec::{ADOPTED_PROPERTY, KEY_PROPERTY};

/// How a table differs from its definition, and what a load does about it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SchemaPlan {
    /// Columns the definition adds (nullable): added in place.
    pub added: Vec<AddedColumn>,
    /// Table properties to set (the definition's value; the table's before).
    pub properties: BTreeMap<String, PropertyChange>,
    /// What cannot be changed in place, each with how to migrate.
    pub refused: Vec<String>,
    /// The table lacks the row fingerprint column (a table another engine
    /// created, taken over by the load: [`open`]).
    pub adopt: bool,
    /// There is no table yet: the load creates it from the definition.
    pub create: bool,
    /// The table never held a row (only its CREATE commit): it takes the
    /// definition's schema and partitioning whatever changed, in place.
    pub replace: bool,
    #[serde(skip)]
    pub hasher: Option<ValueHasher>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AddedColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(skip)]
    pub field: StructField,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropertyChange {
    pub table: Option<String>,
    pub definition: String,
}

impl SchemaPlan {
    /// Whether there is anything to apply in place.
    pub fn has_changes(&self) -> bool {
        self.replace || !self.added.is_empty() || !self.properties.is_empty()
    }

    /// The fingerprint of the definition's rows in this table.
    pub fn hasher(&self, def: &TableDefinition) -> ValueHasher {
        self.hasher.clone().unwrap_or_else(|| ValueHasher::new(def))
    }

    /// Refuses (exit 2) a plan with changes that cannot be made in place.
    pub fn check(&self, def: &TableDefinition, location: &Location) -> Result<()> {
        if self.refused.is_empty() {
            return Ok(());
        }
        Err(Error::usage(
            Stage::Definition,
            location,
            format!(
                "the table cannot follow its definition ({}/table.toml) in place: {}",
                def.origin,
                self.refused.join("; ")
            ),
        ))
    }
}

/// Compares `table` (if there is one) with `def`.
pub fn plan(def: &TableDefinition, table: Option<&DeltaTable>, location: &Location) -> Result<SchemaPlan> {
    let Some(table) = table else {
        return Ok(SchemaPlan { create: true, hasher: Some(ValueHasher::new(def)), ..SchemaPlan::default() });
    };
    let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Definition, location, e))?;
    let spec = TableSpec::shape_of(def)?;
    let schema = snapshot.schema();
    let actual: Vec<&StructField> = schema.fields().collect();
    let row_hash = def.row_hash_column();
    let mut plan = SchemaPlan::default();
    let new_table_hint = format!(
        "create a new table (set table_path in {}/table.toml to a new path) and back-fill it with \
         `shoplake backfill --table-name {}`",
        def.origin, def.name
    );

    let configuration = snapshot.metadata().configuration();
    let adopted = !actual.iter().any(|f| f.name() == row_hash)
        || configuration.get(ADOPTED_PROPERTY).is_some_and(|v| v == "true");
    for wanted in &spec.fields {
        match actual.iter().find(|f| f.name() == wanted.name()) {
            None if wanted.name() == row_hash => plan.adopt = true,
            None if wanted.is_nullable() => plan.added.push(AddedColumn {
                name: wanted.name().clone(),
                type_name: wanted.data_type().to_string(),
                field: wanted.clone().with_metadata([(ADDED_COLUMN.0, ADDED_COLUMN.1)]),
            }),
            None => plan.refused.push(format!(
                "new column {} is not nullable, but the table's rows have no value for it: declare it \
                 nullable, or {new_table_hint}",
                wanted.name()
            )),
            Some(found) if found.data_type() != wanted.data_type() => plan.refused.push(format!(
                "column {} is {} in the table and {} in the definition (a type change): {new_table_hint}",
                wanted.name(),
                found.data_type(),
                wanted.data_type()
            )),
            // A table another engine created (all columns nullable, as
            // Spark writes them) is taken over as it is: shoplake itself
            // keeps the definition's not-null columns free of nulls.
            Some(found) if found.is_nullable() && !wanted.is_nullable() && adopted => {}
            Some(found) if found.is_nullable() != wanted.is_nullable() => plan.refused.push(format!(
                "column {} is {} in the table and {} in the definition (a nullability change): \
                 declare it as the table has it, or {new_table_hint}",
                wanted.name(),
                if found.is_nullable() { "nullable" } else { "not null" },
                if wanted.is_nullable() { "nullable" } else { "not null" }
            )),
            Some(_) => {}
        }
    }
    // On a table with column mapping, an added column gets its physical
    // name and id (the same in every plan of one load).
    let mapping = crate::features::mapping::ColumnMapping::of(table, location)?;
    if mapping.is_on() {
        let names: Vec<String> = plan.added.iter().map(|a| a.name.clone()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for added in &mut plan.added {
            added.field = mapping.mapped_field(added.field.clone(), &names);
        }
    }
    let removed: Vec<&StructField> =
        actual.iter().copied().filter(|f| !spec.fields.iter().any(|w| w.name() == f.name())).collect();
    for gone in &removed {
        let renamed_to = plan.added.iter().find(|a| &a.field.data_type().clone() == gone.data_type());
        let rename = match renamed_to {
            Some(to) => format!(" (renamed to {}?)", to.name),
            None => String::new(),
        };
        plan.refused.push(format!(
            "the table has column {}{rename} that the definition no longer declares (a removed or renamed \
             column; deltalake 1.x cannot drop or rename columns): declare it again, or {new_table_hint}",
            gone.name()
        ));
    }
    let partitions = snapshot.metadata().partition_columns().to_vec();
    if partitions != [def.partition_by.clone()] {
        plan.refused.push(format!(
            "the table is partitioned by [{}] and the definition by {} (a partition change): {new_table_hint}",
            partitions.join(", "),
            def.partition_by
        ));
    }
    let key = def.key.join(",");
    match configuration.get(KEY_PROPERTY) {
        Some(recorded) if *recorded != key => plan.refused.push(format!(
            "the table's key is ({recorded}) and the definition's ({key}) (a key change): {new_table_hint}"
        )),
        _ => {}
    }
    for (name, value) in &spec.properties {
        if configuration.get(name) != Some(value) {
            plan.properties.insert(
                name.clone(),
                PropertyChange { table: configuration.get(name).cloned(), definition: value.clone() },
            );
        }
    }
    // A table that never held a row (a first load that failed after creating
    // it, say with a definition being corrected) has nothing to keep
    // consistent: it simply takes the definition.
    // Only a table shoplake created (it records the key): another tool's
    // empty table is not shoplake's to reshape.
    let differs = !plan.refused.is_empty() || !plan.added.is_empty() || plan.adopt;
    let created_here = configuration.contains_key(KEY_PROPERTY);
    if differs && created_here && crate::storage::version_of(table) == 0 && snapshot.log_data().num_files() == 0 {
        return Ok(SchemaPlan { replace: true, hasher: Some(ValueHasher::new(def)), ..SchemaPlan::default() });
    }
    let table_columns = actual.iter().map(|f| (f.name().as_str(), is_added(f)));
    plan.hasher = Some(ValueHasher::for_table(def, table_columns));
    Ok(plan)
}

/// Whether a column was added to the table after it was created.
pub fn is_added(field: &StructField) -> bool {
    matches!(field.metadata().get(ADDED_COLUMN.0), Some(MetadataValue::String(v)) if v == ADDED_COLUMN.1)
}

/// The Delta type of a column, for messages.
pub fn type_of(field: &StructField) -> &DeltaType {
    field.data_type()
}
