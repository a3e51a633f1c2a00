"""The peers section's pure logic: aggregation over rounds, the issue's ratios, the request
bodies and answers of each peer, and the record encoding of the custom runtimes. No network,
no peer installed."""

from __future__ import annotations

import json
import os
from importlib import metadata
from typing import Any

import numpy as np
import pytest

from bench import bodies
from bench.peers import report, stats, systems, venvs
from bench.peers.apps.common import encode_columns, encode_records
from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY

KINDS = {s.name: s.kind for s in systems.SYSTEMS}


def run(
    system: str, c: int, round_: int, rps: float, p99: float, status: int = 0
) -> dict[str, Any]:
    return {
        "system": system,
        "connections": c,
        "round": round_,
        "rps": rps,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": status, "timeout": 0},
        "idle_rss_mib": 100.0,
        "idle_pss_mib": 80.0,
    }


def sample_runs() -> list[dict[str, Any]]:
    runs = []
    for round_, (ours, floor, stock, table) in enumerate(
        ((3000, 3500, 150, 800), (2800, 3300, 170, 900)), start=1
    ):
        runs += [
            run("predict", 16, round_, ours, 10),
            run("healthz", 16, round_, floor, 8),
            run("mlserver_sklearn", 16, round_, stock, 200, status=1),
            run("mlserver_table", 16, round_, table, 40),
            run("predict", 1, round_, 1100, 1.6),
        ]
    return runs


def test_summary_takes_medians_over_rounds_and_sums_errors() -> None:
    summary = stats.summarise(sample_runs())
    row = stats.row(summary, "predict", 16)
    assert row is not None
    assert row["rps"] == 2900 and row["rps_by_round"] == [3000, 2800] and row["rounds"] == 2
    mls = stats.row(summary, "mlserver_sklearn", 16)
    assert mls is not None and mls["non_2xx"] == 2 and mls["failed"] == 0
    assert stats.row(summary, "predict", 4) is None


def test_targets_are_ratios_of_the_medians() -> None:
    got = {t["target"]: t for t in stats.targets(stats.summarise(sample_runs()), KINDS)}
    healthz = got["/predict c=16 >= 0.85x /healthz req/s"]
    assert healthz["measured"].startswith("0.85x") and healthz["met"]
    stock = got["/predict c=16 >= 4x the best stock peer's req/s"]
    assert stock["measured"].startswith("18.12x") and stock["met"]
    table = got["/predict c=16 >= 3x the best table peer's req/s"]
    assert table["measured"].startswith("3.41x") and table["met"]
    assert got["/predict c=16 p99 below every peer's"]["met"]
    c1 = got["/predict c=1 p50 < 1 ms"]
    assert c1["measured"] == "0.80 ms" and c1["met"]
    slow = [r if r["connections"] != 1 else {**r, "p50_ms": 1.2} for r in sample_runs()]
    got = {t["target"]: t for t in stats.targets(stats.summarise(slow), KINDS)}
    assert not got["/predict c=1 p50 < 1 ms"]["met"]


def test_max_difference_refuses_answers_of_another_length() -> None:
    assert stats.max_difference([0.25, 0.5], [0.25, 0.5 + 1e-13]) == pytest.approx(1e-13)
    with pytest.raises(ValueError, match="1 probabilities against our 2"):
        stats.max_difference([0.25, 0.5], [0.25])


def test_the_v2_body_carries_each_column_and_its_answer_reads_back() -> None:
    records = bodies.records(3, seed=1)
    body = json.loads(systems.v2_body(records))
    assert [i["name"] for i in body["inputs"]] == list(FEATURE_COLUMNS)
    assert body["inputs"][2]["data"] == [r["age_group"] for r in records]
    stock = {"outputs": [{"name": "predict_proba", "shape": [2, 2], "data": [0.9, 0.1, 0.3, 0.7]}]}
    assert systems.read_v2(stock) == [0.1, 0.7]
    table = {"outputs": [{"name": "probability", "shape": [2], "data": [0.1, 0.7]}]}
    assert systems.read_v2(table) == [0.1, 0.7]
    with pytest.raises(ValueError, match="no probability"):
        systems.read_v2({"outputs": [{"name": "predict", "shape": [2], "data": [0, 1]}]})


def test_records_encode_to_the_vocabulary_codes() -> None:
    records = bodies.records(50, seed=3)
    codes = encode_records(records)
    expected = [[VOCABULARY[c].index(r[c]) for c in FEATURE_COLUMNS] for r in records]
    assert codes.dtype == np.int8 and codes.tolist() == expected
    partial = encode_records([{"age_group": VOCABULARY["age_group"][0]}])
    assert partial[0, 1] == VOCABULARY["sex"].index(MISSING)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"sex": ["Robot"]}, "sex: 'Robot' is not one of"),
        ({"shoe_size": ["42"]}, "unknown inputs"),
        ({"sex": ["Male"], "icu_yn": ["No", "Yes"]}, "different lengths"),
    ],
)
def test_bad_inputs_get_clear_errors(columns: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_columns(columns)


def test_peer_venvs_pin_the_project_venvs_versions() -> None:
    want = venvs.wanted(venvs.PACKAGES["mlserver"])
    assert "uvloop==0.21.0" in want["requirements"]
    assert f"numpy=={metadata.version('numpy')}" in want["requirements"]
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in want["requirements"]


def test_the_report_shows_every_system_and_the_targets() -> None:
    runs = sample_runs()
    peers = {
        "version": "v1",
        "artifact_sha256": "ab" * 32,
        "tolerance": 1e-12,
        "checked_records": 25,
        "systems": [
            {"name": s.name, "title": s.title, "kind": s.kind, "framework": s.framework}
            for s in systems.SYSTEMS
        ],
        "install": {"bentoml": {"seconds": 0.0, "reused": True, "versions": {"bentoml": "1.4.40"}}},
        "checks": [{"system": "mlserver_table", "round": 1, "max_abs_difference": 0.0}],
        "runs": runs,
        "summary": stats.summarise(runs),
    }
    text = "\n".join(report.markdown({"peers": peers}))
    assert "MLServer, custom runtime: our table scorer" in text
    assert "| 160 | 150 / 170 | 100.00 | 200.00 | 2 | 0 | 100 / 80 | - | 18.12x |" in text
    assert "bentoml 1.4.40 (reused)" in text
    assert report.markdown({}) == []


def test_a_peers_tree_is_found_by_parent_and_only_its_own_processes_are_killed() -> None:
    import subprocess

    from bench.peers import section

    child = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a group of its own
    try:
        found = section.tree([os.getpid()])
        assert os.getpid() in found and child.pid in found
        assert section.memory_mib([child.pid])["processes"] == 1
        # a process that is not the one recorded (another start time) is left alone
        stale = {child.pid: [*found[child.pid][:19], "0", *found[child.pid][20:]]}
        section.stop_leftovers(stale)
        assert child.poll() is None
        section.stop_leftovers({child.pid: found[child.pid]})
        assert child.wait(timeout=10) == -9
    finally:
        child.kill()
        child.wait()
