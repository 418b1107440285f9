"""Helpers of the shoplake DAG files (deploy/airflow/dags), importable because Airflow puts the
DAG folder on sys.path; `.airflowignore` keeps the DAG processor from parsing them as DAG files.

  table_definitions  parse time: the table definitions (tables/<name>/table.toml), their locations
                     and Airflow Assets, read cheaply (no database, no binary, no process)
  ingest             run time: configuration, `shoplake ingest` arguments, exit-code mapping, the
                     subprocess and Kubernetes operators, the asset event's extra
  lineage            run time: the OpenLineage parent of a shoplake run, from the provider's macros
"""
