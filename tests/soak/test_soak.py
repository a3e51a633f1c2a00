"""The soak (``bench/soak.py``): its CI variant against a stack of its own, and its analysis.

``test_one_minute_of_mixed_traffic_leaks_nothing`` is the 60-second variant of ``make soak``:
the same traffic mix and the same checks, every period scaled down (warm-up 15 s, a sample
every 5 s, a training every 10 s, an upload and a promotion every 15 s). It asserts nothing
about throughput, only growth and failures.

The other tests feed the analysis made-up samples, so that what "flat" means is pinned down
without a stack: a leak fails, noise of the kind a busy machine makes does not; and the
training pool child is judged on the samples taken between trainings, whatever the periodic
samples caught.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.soak import (
    SoakConfig,
    Tally,
    analyse,
    markdown,
    replaced_processes,
    run_soak,
    verdict,
    write_results,
)
from tests.integration.conftest import require_redis_server


@pytest.mark.soak
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_one_minute_of_mixed_traffic_leaks_nothing(tmp_path: Path) -> None:
    require_redis_server()
    result = run_soak(SoakConfig.ci(), tmp_path / "work")
    write_results(result, tmp_path, "soak-ci")
    print("\n" + markdown(result))
    failed = [c for c in result["checks"] if not c["ok"]]
    assert not failed, f"{failed}\nfirst failures: {result['failures'][:5]}"


# -- the analysis, on made-up samples -----------------------------------------------------------

CONFIG = SoakConfig.ci()  # warm-up 15 s, a sample every 5 s, windows of 3 samples
CHILD = "worker-training/child"
Tweak = Callable[[int, dict[str, Any]], None]


def samples(tweak: Tweak | None = None, count: int = 13) -> list[dict[str, Any]]:
    """A flat run: ``count`` samples 5 s apart; ``tweak(i, sample)`` changes sample ``i``."""
    base = {
        "processes": {
            "api": {"pid": 10, "rss_kib": 200_000, "fds": 44},
            "worker-training": {"pid": 20, "rss_kib": 190_000, "fds": 24},
            "worker-training/child": {"pid": 21, "rss_kib": 160_000, "fds": 13},
            "redis": {"pid": 30, "rss_kib": 13_000, "fds": 34},
        },
        "redis": {
            "keys": 13,
            "used_memory": 2_300_000,
            "clients_bytes": 400_000,
            "used_memory_less_clients": 1_900_000,
            "job_records": 1,
            "job_shared_keys": 3,
            "in_flight_keys": 0,
            "other_keys": 8,
            "clients_by_process": {"api": 20, "worker-training": 7, "soak": 1},
            "other_key_names": [],
        },
    }
    out = []
    for i in range(count):
        sample = copy.deepcopy(base)
        sample["t"] = i * CONFIG.sample_s
        if tweak is not None:
            tweak(i, sample)
        out.append(sample)
    return out


def between(tweak: Tweak | None = None, count: int = 6) -> list[dict[str, Any]]:
    """The train loop's samples of the training worker, one after each of ``count`` trainings
    (10 s apart from 3 s, so the first falls in the warm-up); ``tweak(i, sample)`` changes
    sample ``i``."""
    base = {
        "settled": True,
        "processes": {
            "worker-training": {"pid": 20, "rss_kib": 190_000, "fds": 24},
            CHILD: {"pid": 21, "rss_kib": 160_000, "fds": 13},
        },
        "redis": {"clients_by_process": {"worker-training": 7, CHILD: 1, "other": 29}},
    }
    out = []
    for i in range(count):
        sample = copy.deepcopy(base)
        sample["t"], sample["training"] = 3 + 10 * i, i
        if tweak is not None:
            tweak(i, sample)
        out.append(sample)
    return out


def failing(runs: list[dict[str, Any]], idle: list[dict[str, Any]] | None = None) -> list[str]:
    return [s.name for s in analyse(runs, between() if idle is None else idle, CONFIG) if not s.ok]


def child_series(runs: list[dict[str, Any]], idle: list[dict[str, Any]]) -> dict[str, Any]:
    return {s.name: s for s in analyse(runs, idle, CONFIG) if s.name.startswith(CHILD)}


def test_a_flat_run_passes() -> None:
    assert failing(samples()) == []


def test_rss_growing_past_five_percent_fails() -> None:
    def leak(i: int, s: dict[str, Any]) -> None:
        s["processes"]["api"]["rss_kib"] = 200_000 + 2_000 * i  # +1% a sample

    assert failing(samples(leak)) == ["api RSS"]


def test_rss_noise_within_five_percent_passes() -> None:
    def noise(i: int, s: dict[str, Any]) -> None:
        s["processes"]["api"]["rss_kib"] = 200_000 + (4_000 if i % 2 else -3_000)

    assert failing(samples(noise)) == []


def test_one_odd_sample_in_a_window_does_not_fail() -> None:
    def burst(i: int, s: dict[str, Any]) -> None:
        if i == 12:  # the very last sample caught a burst: a 1,000-record body, an upload
            s["processes"]["api"]["rss_kib"] = 260_000
            s["processes"]["api"]["fds"] = 45

    assert failing(samples(burst)) == []


def test_redis_memory_is_judged_without_the_client_buffers() -> None:
    def buffers(i: int, s: dict[str, Any]) -> None:
        s["redis"]["clients_bytes"] = 400_000 + 60_000 * (i % 3)  # in flight: noise
        s["redis"]["used_memory"] = 1_900_000 + s["redis"]["clients_bytes"]

    assert failing(samples(buffers)) == []

    def leak(i: int, s: dict[str, Any]) -> None:
        s["redis"]["used_memory_less_clients"] = 1_900_000 + 20_000 * i  # keys nobody expires

    assert failing(samples(leak)) == ["redis used_memory less client buffers"]


def test_one_descriptor_leaked_per_training_fails() -> None:
    def leak(i: int, s: dict[str, Any]) -> None:
        s["processes"]["worker-training"]["fds"] = 24 + i // 2

    assert failing(samples(leak)) == ["worker-training fds"]


def test_a_redis_pool_reaching_its_high_water_mark_passes() -> None:
    def step(i: int, s: dict[str, Any]) -> None:
        if i >= 9:  # one more connection in the API's pool, so one more descriptor on each end
            s["redis"]["clients_by_process"]["api"] = 21
            s["processes"]["api"]["fds"] = 45
            s["processes"]["redis"]["fds"] = 35

    assert failing(samples(step)) == []


def test_a_redis_connection_leaked_per_training_fails() -> None:
    def leak(i: int, s: dict[str, Any]) -> None:
        s["redis"]["clients_by_process"]["worker-training"] = 7 + i // 2
        s["processes"]["worker-training"]["fds"] = 24 + i // 2
        s["processes"]["redis"]["fds"] = 34 + i // 2

    # judged at the process holding the connections (redis-server's end is the same count)
    assert failing(samples(leak)) == ["worker-training fds"]


def test_redis_connections_from_outside_the_stack_are_judged_at_redis_server() -> None:
    def strangers(i: int, s: dict[str, Any]) -> None:
        s["redis"]["clients_by_process"]["other"] = i // 2
        s["processes"]["redis"]["fds"] = 34 + i // 2

    assert failing(samples(strangers)) == ["redis fds"]


def test_a_descriptor_leaked_by_redis_server_fails() -> None:
    def leak(i: int, s: dict[str, Any]) -> None:
        s["processes"]["redis"]["fds"] = 34 + i // 4  # not a client: a file, a pipe

    assert failing(samples(leak)) == ["redis fds"]


def test_the_training_child_is_judged_on_the_samples_between_trainings() -> None:
    def training(i: int, s: dict[str, Any]) -> None:
        # every periodic sample caught a training (a slow machine), the last ones the fit's
        # biggest arrays and the CSV open: none of it is the child's own growth
        s["processes"][CHILD]["rss_kib"] = 300_000 if i >= 10 else 200_000
        s["processes"][CHILD]["fds"] = 15 if i >= 10 else 14

    runs = samples(training)
    assert failing(runs) == []
    series = child_series(runs, between())
    assert series[f"{CHILD} RSS"].first == series[f"{CHILD} RSS"].last == 160_000 / 1024
    assert series[f"{CHILD} RSS"].samples == 4  # the 4 after the warm-up (t >= 15 s)
    assert "between trainings only: 4 samples" in series[f"{CHILD} RSS"].note

    def leak(i: int, s: dict[str, Any]) -> None:  # the child keeps each fit's arrays
        s["processes"][CHILD]["rss_kib"] = 160_000 + 6_000 * i  # +3.75% a training
        s["processes"][CHILD]["fds"] = 13 + i  # and the CSV it read

    assert failing(samples(), between(leak)) == [f"{CHILD} RSS", f"{CHILD} fds"]


def test_the_training_child_with_too_few_samples_between_trainings_fails_and_says_so() -> None:
    runs = samples()
    for idle in (between(count=5), []):  # 3 after the warm-up, then none: 4 needed in CI
        series = child_series(runs, idle)
        assert [s.ok for s in series.values()] == [False, False]  # however flat
        checks = verdict(list(series.values()), Tally(), [], runs, CONFIG, [])
        for check in checks[:2]:
            assert check.name.startswith(CHILD) and not check.ok
            assert "too few, 4 needed (2 windows of child_window=2)" in check.detail


def test_the_ci_variant_needs_as_many_trainings_as_its_steady_part_holds() -> None:
    steady_s = CONFIG.duration_s - CONFIG.warmup_s
    assert CONFIG.steady_trainings == 2 * CONFIG.child_window
    assert CONFIG.steady_trainings <= steady_s // CONFIG.train_every_s
    full = SoakConfig()  # and the 10-minute soak's
    assert full.steady_trainings <= (full.duration_s - full.warmup_s) // full.train_every_s


def test_the_warm_up_is_left_out() -> None:
    def warming(i: int, s: dict[str, Any]) -> None:
        if s["t"] < CONFIG.warmup_s:  # imports, first requests, pools filling
            s["processes"]["api"]["rss_kib"] = 100_000
            s["processes"]["api"]["fds"] = 30

    assert failing(samples(warming)) == []


def test_job_keys_that_never_expire_pile_up_past_the_bound() -> None:
    def no_expiry(i: int, s: dict[str, Any]) -> None:
        s["redis"]["job_records"] = 1 + i // 2  # one more per training, none expiring

    assert failing(samples(no_expiry)) == ["redis keys: job store"]


def test_job_keys_moving_with_the_training_cycle_pass() -> None:
    def cycle(i: int, s: dict[str, Any]) -> None:
        s["redis"]["job_records"] = (0, 2)[i % 2]
        s["redis"]["job_shared_keys"] = (0, 3)[i % 2]  # the index and metrics expire too

    assert failing(samples(cycle)) == []


def test_another_key_appearing_fails() -> None:
    def leak(i: int, s: dict[str, Any]) -> None:
        s["redis"]["other_keys"] = 8 + i

    assert failing(samples(leak)) == ["redis keys: other"]


def test_failures_fail_and_injected_faults_do_not() -> None:
    runs = samples()
    series = analyse(runs, between(), CONFIG)
    trainings = [{"status": "succeeded"}]
    tally = Tally()
    tally.record("POST /predict (1)", "200", True)
    tally.record("POST /predict (1)", "422", False, injected=True)
    names = {c.name: c.ok for c in verdict(series, tally, trainings, runs, CONFIG, [])}
    assert names["no request failed"]
    tally.record("POST /predict (1000)", "503", False)
    names = {c.name: c.ok for c in verdict(series, tally, trainings, runs, CONFIG, [])}
    assert not names["no request failed"]


def test_a_replaced_process_is_reported() -> None:
    def replaced(i: int, s: dict[str, Any]) -> None:
        if i >= 6:
            s["processes"]["worker-training/child"]["pid"] = 22

    assert replaced_processes(samples(replaced)) == ["worker-training/child: pid 21 -> 22 at 30 s"]
