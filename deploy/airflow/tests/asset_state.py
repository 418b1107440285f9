"""Print what Airflow's metadata DB holds about one Asset, as one JSON object (for test.sh).

    python asset_state.py ASSET_NAME DOWNSTREAM_DAG_ID

{"asset": {"name", "uri"} | null,
 "events": [{"id", "extra", "source_dag_id", "source_task_id", "source_run_id"}, ...] (oldest first),
 "queued_for": [dag ids with an AssetDagRunQueue row for the asset: the scheduler will start them],
 "downstream": {"paused": bool | null,
                "runs": [{"run_id", "state", "run_type", "consumed_event_ids"}, ...]},
 "paused": {dag_id: is_paused, ...}}   (every DAG known to the DB)
"""

from __future__ import annotations

import json
import sys

from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
from sqlalchemy import select


def main(asset_name: str, downstream_dag_id: str) -> None:
    with create_session() as session:
        asset = session.scalars(
            select(AssetModel).where(AssetModel.name == asset_name)
        ).one_or_none()
        out: dict = {"asset": None, "events": [], "queued_for": []}
        if asset is not None:
            out["asset"] = {"name": asset.name, "uri": asset.uri}
            events = session.scalars(
                select(AssetEvent)
                .where(AssetEvent.asset_id == asset.id)
                .order_by(AssetEvent.id)
            ).all()
            out["events"] = [
                {
                    "id": e.id,
                    "extra": e.extra,
                    "source_dag_id": e.source_dag_id,
                    "source_task_id": e.source_task_id,
                    "source_run_id": e.source_run_id,
                }
                for e in events
            ]
            out["queued_for"] = sorted(
                session.scalars(
                    select(AssetDagRunQueue.target_dag_id).where(
                        AssetDagRunQueue.asset_id == asset.id
                    )
                ).all()
            )
        paused = {
            d.dag_id: d.is_paused for d in session.scalars(select(DagModel)).all()
        }
        runs = session.scalars(
            select(DagRun).where(DagRun.dag_id == downstream_dag_id).order_by(DagRun.id)
        ).all()
        out["downstream"] = {
            "paused": paused.get(downstream_dag_id),
            "runs": [
                {
                    "run_id": r.run_id,
                    "state": str(r.state),
                    "run_type": str(r.run_type),
                    "consumed_event_ids": sorted(e.id for e in r.consumed_asset_events),
                }
                for r in runs
            ],
        }
        out["paused"] = paused
    print(json.dumps(out, sort_keys=True, default=str))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
