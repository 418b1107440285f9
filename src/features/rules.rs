//! The rules a table puts on every row it holds, checked on the day's
//! valid rows before anything is committed: its CHECK constraints
//! (`delta.constraints.<name>`, true for every row), column invariants
//! (`delta.invariants`, neither false nor null), generated columns
//! (`delta.generationExpression`: the value must be what the expression
//! gives, nulls equal) and NOT NULL columns. Another engine (Spark's
//! `ALTER TABLE ... ADD CONSTRAINT`) puts them there; a row that breaks
//! one is a data problem (exit 4), named with its rule and first lines.
//!
//! Expressions are Spark SQL; they are planned with DataFusion against the
//! definition's columns when the table is opened, and one DataFusion
//! cannot plan refuses the load before the export is read (exit 2).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use deltalake::kernel::MetadataValue;
use deltalake::DeltaTable;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::storage::Location;

/// Lines of a broken rule named in the message.
const LINES_SHOWN: usize = 5;

/// One rule, and the expression that is true for a row breaking it.
struct RowRule {
    /// For people: "CHECK constraint c (x < 40)".
    name: String,
    broken: Arc<dyn PhysicalExpr>,
}

/// A table's row rules, ready to check batches of the day's rows.
#[derive(Default, Clone)]
pub struct RowRules {
    rules: Arc<Vec<RowRule>>,
}

/// The rows that broke one rule so far.
#[derive(Debug, Default, Clone)]
pub struct Broken {
    pub rows: u64,
    pub lines: Vec<u64>,
}

impl RowRules {
    /// None at all (a table shoplake is about to create has none).
    pub fn none() -> RowRules {
        RowRules::default()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules of `table`, planned against the columns of `def` that the
    /// day's rows carry (`schema`). Refused (exit 2) when one cannot be
    /// planned.
    pub fn of_table(
        table: &DeltaTable,
        def: &TableDefinition,
        schema: SchemaRef,
        location: &Location,
    ) -> Result<RowRules> {
        let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
        let mut sources: Vec<(String, String)> = Vec::new();
        for (key, expression) in snapshot.metadata().configuration() {
            if let Some(name) = key.strip_prefix("delta.constraints.") {
                sources
                    .push((format!("CHECK constraint {name} ({expression})"), format!("({expression}) IS NOT TRUE")));
            }
        }
        for field in snapshot.schema().fields() {
            let column = field.name();
            if def.column(column).is_none() {
                continue;
            }
            let text = |key: &str| match field.metadata().get(key) {
                Some(MetadataValue::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
                None => None,
            };
            if let Some(invariant) = text("delta.invariants") {
                let expression = serde_json::from_str::<serde_json::Value>(&invariant)
                    .ok()
                    .and_then(|v| v.pointer("/expression/expression").and_then(|e| e.as_str()).map(str::to_string))
                    .ok_or_else(|| {
                        Error::usage(
                            Stage::Write,
                            location,
                            format!("column {column}'s invariant is not readable: {invariant}"),
                        )
                    })?;
                sources.push((format!("invariant of {column} ({expression})"), format!("({expression}) IS NOT TRUE")));
            }
            if let Some(generation) = text("delta.generationExpression") {
                sources.push((
                    format!("generated column {column} ({generation})"),
                    format!("{column} IS DISTINCT FROM ({generation})"),
                ));
            }
            if !field.is_nullable() && def.column(column).is_some_and(|c| c.nullable) {
                sources.push((format!("NOT NULL column {column}"), format!("{column} IS NULL")));
            }
        }
        sources.sort();
        let ctx = crate::session::context();
        let df_schema =
            DFSchema::try_from(Schema::clone(&schema)).map_err(|e| Error::internal(Stage::Write, location, e))?;
        let rules = sources
            .into_iter()
            .map(|(name, broken)| {
                let planned: datafusion::error::Result<Arc<dyn PhysicalExpr>> = ctx
                    .parse_sql_expr(&broken, &df_schema)
                    .and_then(|expr: Expr| ctx.create_physical_expr(expr, &df_schema));
                planned.map(|broken| RowRule { name: name.clone(), broken }).map_err(|e| {
                    Error::usage(
                        Stage::Write,
                        location,
                        format!(
                            "the table's {name} cannot be checked here: {}; nothing was read. Drop or rewrite it in \
                             SQL both Spark and DataFusion know.",
                            crate::error::flatten(&e)
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RowRules { rules: Arc::new(rules) })
    }

    /// Checks `rows` (whose export lines are `lines`), adding what broke a
    /// rule to `broken` (by rule).
    pub fn check(
        &self,
        rows: &RecordBatch,
        lines: &dyn Fn(usize) -> u64,
        broken: &mut BTreeMap<String, Broken>,
        source: &str,
    ) -> Result<()> {
        for rule in self.rules.iter() {
            let result = rule
                .broken
                .evaluate(rows)
                .and_then(|value| value.into_array(rows.num_rows()))
                .map_err(|e| Error::rejected(Stage::Validate, source, format!("the table's {}: {e}", rule.name)))?;
            let Some(flags) = result.as_boolean_opt() else {
                return Err(Error::usage(
                    Stage::Validate,
                    source,
                    format!("the table's {} is not a condition", rule.name),
                ));
            };
            if flags.true_count() == 0 {
                continue;
            }
            let entry = broken.entry(rule.name.clone()).or_default();
            for row in (0..flags.len()).filter(|&r| flags.is_valid(r) && flags.value(r)) {
                entry.rows += 1;
                if entry.lines.len() < LINES_SHOWN {
                    entry.lines.push(lines(row));
                }
            }
        }
        Ok(())
    }
}

/// Refuses (exit 4) a day whose rows broke the table's rules.
pub fn verdict(broken: &BTreeMap<String, Broken>, source: &str) -> Result<()> {
    if broken.is_empty() {
        return Ok(());
    }
    let each: Vec<String> = broken
        .iter()
        .map(|(rule, b)| {
            let lines: Vec<String> = b.lines.iter().map(u64::to_string).collect();
            match b.rows {
                1 => format!("1 row breaks the table's {rule} (line {})", lines.join(", ")),
                n if n as usize > b.lines.len() => {
                    format!("{n} rows break the table's {rule} (lines {}, ...)", lines.join(", "))
                }
                n => format!("{n} rows break the table's {rule} (lines {})", lines.join(", ")),
            }
        })
        .collect();
    Err(Error::rejected(
        Stage::Validate,
        source,
        format!("{}; nothing was committed: correct the export, or the table's rule", each.join("; ")),
    ))
}
