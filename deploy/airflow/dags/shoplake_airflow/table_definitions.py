"""The table definitions as the DAG files see them when they are parsed: cheap, no database.

shoplake declares every table in `<tables>/<name>/table.toml` (tables/README.md). The DAG files
generate one ingestion DAG and one example downstream DAG per definition, so they need the
definitions each time the DAG processor parses them (every 30 s by default). They read the TOML
files with the standard library (`tomllib`) rather than running `shoplake tables --format json`:

  * the DAG processor needs no shoplake binary (with the kubernetes runner the binary exists only
    in the image) and starts no process per parse;
  * reading a few small files takes well under a millisecond and cannot hang, where a subprocess
    needs a timeout and a decision for when it expires (no DAGs? stale DAGs?);
  * shoplake stays the judge of validity. A definition this module cannot read still gets its DAGs
    (named after its folder) and its runs fail with shoplake's own exit 2 and message, which
    alerts, instead of the table silently losing its schedule. tests/test_table_definitions.py
    checks this reader against `shoplake tables --format json`, so the two cannot drift apart.

Only what the DAGs need is read: name, description, key, partition_by, source_pattern, table_path.

Settings, from the environment of the DAG processor AND of the workers (which parse the file again
to run a task), the same variables shoplake itself reads:
  SHOPLAKE_TABLES  the definitions folder. Default: the `tables/` folder of the checkout these DAG
                   files are in (<repo>/tables, the folder the image's built-in definitions come
                   from), so shipping the repository with the DAGs is enough.
  SHOPLAKE_LAKE    where the tables live: an absolute local path or s3://bucket/prefix (if unset,
                   the folder of SHOPLAKE_TABLE when that names shopify_configuration, as a
                   deployment from before run-time definitions sets it). Required:
                   a table's Airflow Asset URI is its location `<lake>/<table_path>`, which must
                   be known when the file is parsed (a Variable would need the metadata DB).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (Airflow 3 supports it): pip install tomli
    import tomli as tomllib  # type: ignore[no-redef]

from airflow.sdk import Asset

log = logging.getLogger(__name__)

TABLES_ENV = "SHOPLAKE_TABLES"
LAKE_ENV = "SHOPLAKE_LAKE"
# deploy/airflow/dags/shoplake_airflow/table_definitions.py -> <repo>/tables
CHECKOUT_TABLES = Path(__file__).resolve().parents[4] / "tables"
DEFAULT_SOURCE_PATTERN = "{date}.csv"
# What Airflow accepts in a DAG id; table names (lower-case SQL names) always are.
DAG_ID_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


class DefinitionsError(RuntimeError):
    """The DAG files cannot know the tables: the file fails to import, loudly, in the UI."""


@dataclass(frozen=True)
class TableDefinition:
    """One `tables/<name>/table.toml`, the fields the DAGs use."""

    name: str
    folder: Path
    description: str = ""
    key: tuple[str, ...] = ()
    partition_by: str | None = None
    source_pattern: str = DEFAULT_SOURCE_PATTERN
    table_path: str = ""
    # Why the file could not be read (then only `name`, from the folder, is known): shoplake
    # refuses the table at run time with exit 2 and says why.
    problem: str | None = field(default=None, compare=False)

    @property
    def path_under_lake(self) -> str:
        return self.table_path or self.name


def definitions_folder(environ: dict[str, str] | None = None) -> Path:
    """$SHOPLAKE_TABLES, else the checkout's tables/ folder; an error when it does not exist."""
    environ = os.environ if environ is None else environ
    configured = environ.get(TABLES_ENV, "").strip()
    folder = Path(configured) if configured else CHECKOUT_TABLES
    if not folder.is_dir():
        raise DefinitionsError(
            f"no table definitions folder at {folder}: set {TABLES_ENV} to the folder holding "
            "<name>/table.toml, in the environment of the DAG processor and the workers"
        )
    return folder.resolve()


def read_definition(table_toml: Path) -> TableDefinition:
    """One definition; a file that does not parse gives a definition with only its name."""
    folder = table_toml.parent
    name = folder.name
    try:
        with table_toml.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as err:
        log.warning("shoplake table definition %s unreadable: %s", table_toml, err)
        return TableDefinition(name=name, folder=folder, problem=f"{table_toml}: {err}")
    problem = None
    declared = data.get("name")
    if declared != name:
        problem = f"{table_toml}: name {declared!r} is not the folder's name {name!r}"
        log.warning("shoplake table definition %s", problem)
    key = data.get("key")
    return TableDefinition(
        name=name,
        folder=folder,
        description=str(data.get("description") or ""),
        key=tuple(str(k) for k in key) if isinstance(key, list) else (),
        partition_by=data.get("partition_by"),
        source_pattern=str(data.get("source_pattern") or DEFAULT_SOURCE_PATTERN),
        table_path=str(data.get("table_path") or ""),
        problem=problem,
    )


def read_definitions(folder: Path) -> list[TableDefinition]:
    """Every `<folder>/<name>/table.toml`, by name. Folders whose name cannot be a DAG id are
    skipped with a warning (shoplake refuses them too: a table name is a lower-case SQL name)."""
    definitions = []
    for table_toml in sorted(folder.glob("*/table.toml")):
        name = table_toml.parent.name
        if not DAG_ID_SAFE.fullmatch(name):
            log.warning(
                "shoplake table folder %r skipped: not a valid table name", name
            )
            continue
        definitions.append(read_definition(table_toml))
    if not definitions:
        raise DefinitionsError(f"no <name>/table.toml under {folder} ({TABLES_ENV})")
    return definitions


def lake_root(environ: dict[str, str] | None = None) -> str:
    """$SHOPLAKE_LAKE: s3://bucket/prefix (or another URL) as given, a local path made absolute."""
    environ = os.environ if environ is None else environ
    lake = environ.get(LAKE_ENV, "").strip()
    # A deployment from before run-time definitions sets only SHOPLAKE_TABLE,
    # the shopify_configuration table: its lake is the folder holding it.
    legacy_table = environ.get("SHOPLAKE_TABLE", "").strip().rstrip("/")
    if not lake and legacy_table.rsplit("/", 1)[-1] == "shopify_configuration" and "/" in legacy_table:
        lake = legacy_table.rsplit("/", 1)[0]
        log.info("%s is not set: the lake is %s, the folder of SHOPLAKE_TABLE", LAKE_ENV, lake)
    if not lake:
        raise DefinitionsError(
            f"{LAKE_ENV} is not set: the DAGs declare each table's location "
            f"(<{LAKE_ENV}>/<table_path>) as an Airflow Asset when they are parsed. Set it, e.g. "
            f"{LAKE_ENV}=s3://acme-lake, in the environment of the DAG processor and the workers"
        )
    if "://" not in lake and not os.path.isabs(lake):
        raise DefinitionsError(
            f"{LAKE_ENV}={lake!r} is relative: give an absolute path or s3://bucket/prefix "
            "(the DAG processor's and the workers' working directories differ)"
        )
    return normalize_location(lake)


def normalize_location(location: str) -> str:
    """A table location as shoplake is given it: URL as is, file:// and local paths absolute,
    no trailing slash (so that two spellings of one place compare equal)."""
    location = location.strip().removeprefix("file://")
    if "://" in location:
        return location.rstrip("/")
    return os.path.abspath(location)


def table_location(lake: str, definition: TableDefinition) -> str:
    """Where shoplake writes the table: `<lake>/<table_path>` (table_path defaults to the name)."""
    return normalize_location(f"{lake.rstrip('/')}/{definition.path_under_lake}")


def asset_uri(location: str) -> str:
    """The Asset URI of a table location: file:///abs/path for a local table, s3://... as is."""
    location = normalize_location(location)
    return location if "://" in location else Path(location).as_uri()


def table_asset(definition: TableDefinition, lake: str) -> Asset:
    """The table as an Airflow Asset: name = the table's name, uri = its location."""
    return Asset(
        name=definition.name,
        uri=asset_uri(table_location(lake, definition)),
    )
