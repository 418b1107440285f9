"""Check one `shopify_redact` run from the metadata DB's view of it (for test.sh step (i)):

    python check_redact.py STATE_JSON PURGE SHOP_ID TABLE...

STATE_JSON is tests/ti_state.py's output for the run; PURGE is "true" when the run passed --purge.
Checks the erase task (success at the first try, one report a table in its XCom, each erasure's
commit holding its id and the reason naming the DAG run but never the shop id) and the verify task
(its `evidence` XCom covers every table; with --purge: success, the value absent everywhere;
without: failed at the first try, no retry, objects of every table named). Prints a summary line;
exits non-zero with the failed assertion.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(state_file: str, purge_arg: str, shop: str, tables: list[str]) -> str:
    state, purge = json.loads(Path(state_file).read_text()), purge_arg == "true"
    tasks, xcom = state["tasks"], state["xcom"]
    assert tasks["erase"] == {"state": "success", "try_number": 1}, tasks
    reports = {r["table_name"]: r for r in xcom["erase"]["return_value"]}
    assert sorted(reports) == sorted(tables), reports
    erased = []
    for name, r in sorted(reports.items()):
        assert (
            r["rows_erased"] >= 1 and r["erasure_id"] and len(r["value_hash"]) == 64
        ), r
        commit = Path(r["table"]) / "_delta_log" / f"{r['table_version']:020d}.json"
        text = commit.read_text()
        reason = f"shop/redact (dag run {state['run_id']}): airflow-test"
        assert r["erasure_id"] in text and json.dumps(reason) in text, (
            commit,
            text[-600:],
        )
        assert shop not in text, f"{commit} holds the shop id"
        erased.append(
            f"{name} {r['rows_erased']} row(s) (erasure {r['erasure_id'][:8]}, "
            f"version {r['table_version']})"
        )
    evidence = xcom["verify"]["evidence"]
    assert sorted({e["table_name"] for e in evidence}) == sorted(tables), evidence
    holding = sum(len(e["holding"]) for e in evidence)
    if purge:
        assert tasks["verify"] == {"state": "success", "try_number": 1}, tasks
        assert state["run_state"] == "success", state["run_state"]
        assert all(e["result"] == "absent" and not e["holding"] for e in evidence), (
            evidence
        )
    else:  # older versions still hold the value: exit 4, failed at once
        assert tasks["verify"] == {"state": "failed", "try_number": 1}, tasks
        assert "verify" not in state["history"], state["history"]
        for name in tables:
            named = [e for e in evidence if e["table_name"] == name and e["holding"]]
            assert named and all(e["result"] == "present" for e in named), (
                name,
                evidence,
            )
    read = sum(e["objects_checked"] for e in evidence)
    return (
        f"erase: {'; '.join(erased)}. verify: {len(evidence)} evidence objects in XCom, "
        f"{read} objects read, {holding} holding the value"
    )


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
