"""Print what the metadata DB recorded for one run of a DAG, as one JSON object (for test.sh).

    python ti_state.py DAG_ID LOGICAL_DATE

{"run_state": ..., "tasks": {task_id: {"state", "try_number"}},
 "history": {task_id: [{"try_number", "state"}, ...]},   (earlier tries, task_instance_history)
 "xcom": {task_id: {key: value}}}                         (what the tasks pushed, e.g. evidence)
"""

from __future__ import annotations

import json
import sys

from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.taskinstancehistory import TaskInstanceHistory
from airflow.models.xcom import XComModel
from airflow.sdk import timezone
from airflow.utils.session import create_session
from sqlalchemy import select


def main(dag_id: str, logical_date: str) -> None:
    when = timezone.parse(logical_date)
    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.logical_date == when)
        ).one()
        tis = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
            )
        ).all()
        history = session.scalars(
            select(TaskInstanceHistory)
            .where(
                TaskInstanceHistory.dag_id == dag_id,
                TaskInstanceHistory.run_id == run.run_id,
            )
            .order_by(TaskInstanceHistory.try_number)
        ).all()
        out = {
            "run_id": run.run_id,
            "run_state": str(run.state),
            "tasks": {
                ti.task_id: {"state": str(ti.state), "try_number": ti.try_number}
                for ti in tis
            },
            "history": {},
        }
        for h in history:
            out["history"].setdefault(h.task_id, []).append(
                {"try_number": h.try_number, "state": str(h.state)}
            )
        xcoms = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_id, XComModel.run_id == run.run_id
            )
        ).all()
        out["xcom"] = {}
        for x in xcoms:
            out["xcom"].setdefault(x.task_id, {})[x.key] = XComModel.deserialize_value(
                x
            )
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
