"""Many clients at once through the real stack: every request gets its own answer, whatever
batch it travelled in, from the worker that holds the production model."""

import random
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from cli.stack import LocalStack
from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY
from shared.registry.versions import ModelRegistry

pytestmark = pytest.mark.integration


def random_records(rng: random.Random, n: int) -> list[dict[str, str]]:
    return [
        {"age_group": rng.choice(VOCABULARY["age_group"])}
        | {col: rng.choice(VOCABULARY[col]) for col in FEATURE_COLUMNS if rng.random() < 0.8}
        for _ in range(n)
    ]


def test_concurrent_requests_each_get_their_own_answer(
    stack: LocalStack, client: httpx.Client, production: str
) -> None:
    sent: list[tuple[list[dict[str, str]], int, dict[str, Any]]] = []
    lock = threading.Lock()

    def send(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=stack.base_url, timeout=10) as http:
            for _ in range(25):
                records = random_records(rng, rng.choice([1, 1, 1, 2, 5, 40]))
                response = http.post("/predict", json={"records": records})
                with lock:
                    sent.append((records, response.status_code, response.json()))

    threads = [threading.Thread(target=send, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(sent) == 16 * 25
    assert {status for _, status, _ in sent} == {200}, [b for _, s, b in sent if s != 200][:3]

    registry = ModelRegistry(stack.models_dir)
    assert registry.production_version() == production
    model = registry.load(production)
    every = [record for records, _, _ in sent for record in records]
    frame = pd.DataFrame(every).reindex(columns=FEATURE_COLUMNS).fillna(MISSING)
    expected = iter(model.predict_proba(frame)[:, 1])
    for records, _, body in sent:
        assert body["model_version"] == production
        got = [p["probability"] for p in body["predictions"]]
        want = [next(expected) for _ in records]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_the_prediction_worker_logs_no_line_per_task(
    stack: LocalStack, client: httpx.Client, production: str
) -> None:
    """Celery's per-task INFO lines ('received', 'succeeded') are off on prediction workers;
    the training worker, at the same INFO level, still logs its tasks (the fixture trained
    unless a model was there, and either way a training of this stack made it)."""
    for _ in range(5):
        response = client.post("/predict", json={"records": random_records(random.Random(1), 2)})
        assert response.status_code == 200, response.text
    prediction_log = stack.processes["worker-prediction"].log_tail(10_000)
    assert "rvt.predict[" not in prediction_log  # the banner lists the task, without an id
    assert "rvt.train[" in stack.processes["worker-training"].log_tail(10_000)


def test_the_training_workers_session_yields_under_autogroup_scheduling(stack: LocalStack) -> None:
    """With autogroup scheduling, CPU is shared between sessions first and nice only orders a
    session's own processes: the training worker lowers its session's autogroup as well."""
    autogroup = Path(f"/proc/{stack.processes['worker-training'].popen.pid}/autogroup")
    if not autogroup.exists():
        pytest.skip("this kernel has no autogroup scheduling")
    assert autogroup.read_text().split()[-1] == "10", autogroup.read_text()
