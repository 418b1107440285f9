//! Turns the parsed flags into each command's config, once, before
//! anything runs: the table definitions are loaded (the one pipeline every
//! command shares), the named table resolved to its locations, ratios and
//! ranges checked.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::args::{
    BackfillArgs, CatalogArgs, DefinitionsArgs, GenerateArgs, LineageArgs, LoadArgs, QueryArgs, TableArgs,
};
use crate::audit::query::QueryConfig;
use crate::audit::AsOf;
use crate::backfill::BackfillConfig;
use crate::catalog::{Catalog, DefinitionsDir};
use crate::definition::registry::{CatalogSettings, Metastore};
use crate::definition::{SourceFormat, TableDefinition};
use crate::error::{Error, Result, Stage};
use crate::generate::GenerateConfig;
use crate::ingest::IngestConfig;
use crate::lineage::{LineageConfig, ParentRun};
use crate::storage::Location;
use crate::target::TableTarget;

/// Where `target` is registered after a commit: the flags over its
/// definition's `[catalog]`. Glue takes S3 tables only.
pub fn metastore(args: &CatalogArgs, target: &TableTarget) -> Result<Option<Metastore>> {
    let settings = CatalogSettings {
        kind: args.kind,
        database: args.glue_database.clone(),
        url: args.unity_url.clone(),
        schema: args.unity_schema.clone(),
    };
    let metastore = settings.metastore(target.def.catalog.as_ref()).map_err(|(key, message)| {
        let flag = match key.as_str() {
            "database" => "--glue-database",
            "url" => "--unity-url",
            _ => "--unity-schema",
        };
        Error::usage(Stage::CommandLine, format!("{flag} ({})", target.name()), message)
    })?;
    if let (Some(Metastore::Glue { .. }), Location::Local(_)) = (&metastore, &target.table) {
        return Err(Error::usage(
            Stage::CommandLine,
            &target.table,
            "Glue registers tables on S3 only (Athena, Trino and EMR read s3:// locations): use an s3:// lake, \
             or --catalog unity",
        ));
    }
    Ok(metastore)
}

/// The definitions the flags point at, through the whole pipeline.
pub async fn catalog(args: &DefinitionsArgs) -> Result<&'static Catalog> {
    let dir = DefinitionsDir::resolve(args.tables.as_deref());
    if let DefinitionsDir::Folder(folder) = &dir {
        if !folder.is_dir() {
            return Err(Error::usage(Stage::CommandLine, folder.display(), "--tables: no such folder"));
        }
    }
    Catalog::load(dir).await
}

/// The table the flags name.
pub fn target(catalog: &Catalog, args: &TableArgs) -> Result<TableTarget> {
    let def = catalog.get(&args.table_name)?;
    TableTarget::resolve(def, &Location::parse(&args.lake)?, args.table.as_deref(), args.rejects_table.as_deref())
}

/// Every defined table under the lake (a definition with problems is an error of its own).
pub fn all_targets(catalog: &Catalog, args: &TableArgs) -> Result<Vec<std::result::Result<TableTarget, Error>>> {
    if args.table.is_some() || args.rejects_table.is_some() {
        return Err(Error::usage(
            Stage::CommandLine,
            "--all-tables",
            "--table and --rejects-table (or SHOPLAKE_TABLE, SHOPLAKE_REJECTS_TABLE) name one table: \
             use --lake for all of them",
        ));
    }
    let lake = Location::parse(&args.lake)?;
    Ok(catalog
        .names()
        .into_iter()
        .map(|name| catalog.get(name).and_then(|def| TableTarget::resolve(def, &lake, None, None)))
        .collect())
}

/// The ingest of `date` into each table the flags name (one, or all).
pub fn ingest_configs(
    catalog: &Catalog,
    date: NaiveDate,
    args: &LoadArgs,
) -> Result<Vec<std::result::Result<IngestConfig, Error>>> {
    for (flag, ratio) in [("--max-reject-ratio", args.max_reject_ratio), ("--max-delete-ratio", args.max_delete_ratio)]
    {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Error::usage(Stage::CommandLine, flag, "must be between 0 and 1"));
        }
    }
    let source = Location::parse(&args.source)?;
    let targets =
        if args.all_tables { all_targets(catalog, &args.table)? } else { vec![Ok(target(catalog, &args.table)?)] };
    Ok(targets
        .into_iter()
        .map(|target| {
            target.map(|target| IngestConfig {
                date,
                source: source.clone(),
                target,
                max_reject_ratio: args.max_reject_ratio,
                guards: crate::write::Guards { allow_empty: args.allow_empty, max_delete_ratio: args.max_delete_ratio },
                dry_run: args.dry_run,
            })
        })
        .collect())
}

pub fn backfill_configs(
    catalog: &Catalog,
    args: &BackfillArgs,
) -> Result<Vec<std::result::Result<BackfillConfig, Error>>> {
    check_range(args.from, args.to)?;
    if args.parallel == 0 {
        return Err(Error::usage(Stage::CommandLine, "--parallel", "must be at least 1"));
    }
    Ok(ingest_configs(catalog, args.from, &args.load)?
        .into_iter()
        .map(|ingest| {
            ingest.map(|ingest| BackfillConfig {
                from: args.from,
                to: args.to,
                parallel: args.parallel,
                skip_missing: args.skip_missing,
                ingest,
            })
        })
        .collect())
}

/// Every table registered (those loaded), `--as-of` by name or for all.
pub fn query_config(catalog: &Catalog, args: &QueryArgs, sql: String) -> Result<QueryConfig> {
    let main = target(catalog, &args.table)?;
    let lake = Location::parse(&args.table.lake)?;
    let mut targets = vec![main.clone()];
    for def in catalog.tables() {
        if def.name != main.name() {
            targets.push(TableTarget::resolve(def, &lake, None, None)?);
        }
    }
    let (mut as_of, mut as_of_every) = (BTreeMap::new(), None);
    for text in &args.as_of {
        let (name, value) = match text.split_once('=') {
            Some(("*", value)) => (None, value),
            Some((name, value)) => {
                catalog.get(name)?;
                (Some(name.to_string()), value)
            }
            None => (Some(main.name().to_string()), text.as_str()),
        };
        let point = AsOf::parse(value).map_err(|e| Error::usage(Stage::CommandLine, "--as-of", e))?;
        match name {
            Some(name) => {
                as_of.insert(name, point);
            }
            None if matches!(point, AsOf::Version(_)) => {
                return Err(Error::usage(
                    Stage::CommandLine,
                    "--as-of",
                    "'*=' takes a time: versions differ per table",
                ));
            }
            None => as_of_every = Some(point),
        }
    }
    Ok(QueryConfig { main: main.name().to_string(), targets, sql, as_of, as_of_every })
}

pub fn generate_config(catalog: &Catalog, args: &GenerateArgs) -> Result<GenerateConfig> {
    check_range(args.from, args.to)?;
    let mut tables = if args.all_tables {
        catalog.names().into_iter().map(|name| catalog.get(name)).collect::<Result<Vec<_>>>()?
    } else {
        vec![catalog.get(&args.table_name)?]
    };
    // A JSONL file several tables share (a Bulk Operations result) is written
    // whole: a product's variants are generated with it.
    for shared in catalog.tables() {
        let shares =
            |t: &&TableDefinition| t.format == SourceFormat::Jsonl && t.source_pattern == shared.source_pattern;
        let taken = tables.iter().any(|t| t.name == shared.name);
        if shared.format == SourceFormat::Jsonl && tables.iter().any(shares) && !taken {
            tables.push(shared);
        }
    }
    Ok(GenerateConfig {
        tables,
        from: args.from,
        to: args.to,
        rows: args.rows,
        seed: args.seed,
        revision: args.revision,
        out: Location::parse(&args.out)?,
        dirty: args.dirty,
    })
}

fn check_range(from: NaiveDate, to: NaiveDate) -> Result<()> {
    if from > to {
        return Err(Error::usage(Stage::CommandLine, "--from/--to", format!("{from} is after {to}")));
    }
    Ok(())
}

/// Where lineage goes, and the parent run the environment names.
pub fn lineage_config(args: &LineageArgs) -> LineageConfig {
    LineageConfig {
        url: args.lineage_url.clone().filter(|u| !u.is_empty()),
        file: args.lineage_file.clone(),
        namespace: args.lineage_namespace.clone(),
        api_key: std::env::var("OPENLINEAGE_API_KEY").ok().filter(|k| !k.is_empty()),
        parent: ParentRun::from_environment(),
    }
}
