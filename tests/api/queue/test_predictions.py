"""The prediction client against a real, private ``redis-server`` and a stand-in worker (see
support.py): batching, every request getting its own answer, timeouts, outages, the URL forms
redis-py accepts (password, ACL user, database, ``unix://``, ``rediss://`` and its options), the
task message's format, and the RESP connection's parser. The real worker is exercised in
tests/integration.

No test depends on the machine's speed: waits are bounded by generous timeouts, and the only
"took less than" check is the fail-fast one, with a bound of seconds.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fakeredis
import numpy as np
import pytest
import redis
import redis.utils

from api.queue.messages import message_builder
from api.queue.predictions import RedisPredictionClient
from api.queue.resp import RespParser, encode_command, redis_address
from api.queue.training import producer_app
from cli.stack import free_port
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.errors import NoProductionModelError, OverloadedError, PredictionUnavailableError
from shared.presence import WorkerPresence
from shared.queues import PREDICT_TASK, PREDICTION_QUEUE
from shared.settings import Settings
from tests.api.queue.support import (
    RedisServer,
    StandInWorker,
    SumScorer,
    decode_task,
    make_certificates,
    scored,
)

StartWorker = Callable[..., StandInWorker]
StartServer = Callable[..., RedisServer]


def expected(codes: np.ndarray) -> list[float]:
    return list(SumScorer().predict_proba(codes).tolist())


def client_for(url: str, timeout: float = 10.0, max_waiting: int = 10_000) -> RedisPredictionClient:
    """A client that believes one prediction worker is alive (liveness is tested elsewhere);
    its bound on waiting requests is out of the way unless a test sets one."""
    settings = Settings(
        redis_url=url,
        predict_timeout_seconds=timeout,
        redis_prefix="test",
        predict_max_waiting=max_waiting,
    )
    beats = WorkerPresence(fakeredis.FakeRedis(), prefix="test")
    beats.announce(PREDICTION_QUEUE, "worker-1")
    return RedisPredictionClient(settings, beats)


SIZES = [len(VOCABULARY[col]) for col in FEATURE_COLUMNS]


def random_codes(rng: np.random.Generator, rows: int) -> np.ndarray:
    return np.column_stack([rng.integers(0, size, rows) for size in SIZES]).astype(np.int8)


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=120))


async def predict_when_back(client: RedisPredictionClient, codes: np.ndarray) -> Any:
    """Retry until the client answers again (bounded: 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await client.predict(codes)
        except PredictionUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_redis_py_parses_replies_with_hiredis() -> None:
    """Every Redis client of the project but the prediction hot path is redis-py's."""
    assert redis.utils.HIREDIS_AVAILABLE


def test_concurrent_requests_each_get_their_own_answer_from_gathered_batches(
    redis_server: RedisServer, stand_in_workers: StartWorker
) -> None:
    worker = stand_in_workers(redis_server.url())
    client = client_for(redis_server.url())
    rng = np.random.default_rng(0)
    inputs = [random_codes(rng, int(rng.integers(1, 6))) for _ in range(300)]

    async def scenario() -> list[Any]:
        try:
            return await asyncio.gather(*(client.predict(codes) for codes in inputs))
        finally:
            await client.aclose()

    results = run(scenario())
    for codes, result in zip(inputs, results, strict=True):
        assert result.model_version == "v7"
        assert result.probabilities == pytest.approx(expected(codes), abs=1e-12)
    sizes = [len(task["batch"]) for task in worker.tasks]
    assert sum(sizes) == len(inputs)
    # the requests that found two batches in flight gathered: fewer tasks than requests
    assert len(sizes) < len(inputs) and max(sizes) > 1
    assert client.requests_sent == len(inputs) and client.batches_sent == len(sizes)


def test_a_lone_request_goes_out_alone_and_big_ones_are_split_into_batches(
    redis_server: RedisServer, stand_in_workers: StartWorker
) -> None:
    worker = stand_in_workers(redis_server.url())
    client = client_for(redis_server.url())
    rng = np.random.default_rng(1)
    one = random_codes(rng, 1)
    big = [random_codes(rng, 1500) for _ in range(3)]

    async def scenario() -> list[Any]:
        try:
            assert (await client.predict(one)).probabilities == pytest.approx(expected(one))
            assert [len(t["batch"]) for t in worker.tasks] == [1]
            return await asyncio.gather(*(client.predict(codes) for codes in big))
        finally:
            await client.aclose()

    results = run(scenario())
    for codes, result in zip(big, results, strict=True):
        assert result.probabilities == pytest.approx(expected(codes), abs=1e-12)
    # 1,500 + 1,500 records exceed a batch's 2,000: no task carries two of them
    assert all(len(task["batch"]) == 1 for task in worker.tasks)


def test_worker_errors_reach_the_right_request(
    redis_server: RedisServer, stand_in_workers: StartWorker
) -> None:
    def respond(batch: list[list[str]]) -> list[dict[str, Any]]:
        return [
            {"id": rid, "error": {"code": "no_production_model", "message": "train first"}}
            if enc[1] == "4"
            else scored([[rid, enc]])[0]
            for rid, enc in batch
        ]

    stand_in_workers(redis_server.url(), respond)
    client = client_for(redis_server.url())
    good = np.zeros((1, 7), dtype=np.int8)
    bad = np.array([[0, 4, 0, 0, 0, 0, 0]], dtype=np.int8)

    async def scenario() -> list[Any]:
        try:
            return list(
                await asyncio.gather(
                    client.predict(good), client.predict(bad), return_exceptions=True
                )
            )
        finally:
            await client.aclose()

    results = run(scenario())
    assert results[0].probabilities == [0.0]
    assert isinstance(results[1], NoProductionModelError)


def test_a_reply_that_misses_a_request_fails_only_that_request(
    redis_server: RedisServer, stand_in_workers: StartWorker
) -> None:
    def respond(batch: list[list[str]]) -> list[dict[str, Any]]:
        return [r for r in scored(batch) if r["id"] != batch[-1][0] or len(batch) == 1]

    worker = stand_in_workers(redis_server.url(), respond)
    client = client_for(redis_server.url())
    rng = np.random.default_rng(2)
    inputs = [random_codes(rng, 1) for _ in range(60)]

    async def scenario() -> list[Any]:
        try:
            await client.predict(inputs[0])  # from now on the requests queue without waiting
            return await asyncio.gather(
                *(client.predict(codes) for codes in inputs), return_exceptions=True
            )
        finally:
            await client.aclose()

    results = run(scenario())
    lost = [r for r in results if isinstance(r, PredictionUnavailableError)]
    assert len(lost) == sum(len(t["batch"]) > 1 for t in worker.tasks) > 0
    assert all("lost this request" in str(r) for r in lost)
    for codes, result in zip(inputs, results, strict=True):
        if not isinstance(result, Exception):
            assert result.probabilities == pytest.approx(expected(codes), abs=1e-12)


def test_past_the_bound_requests_are_refused_at_once_and_those_admitted_are_answered(
    redis_server: RedisServer, stand_in_workers: StartWorker
) -> None:
    """No worker consumes until the bound is full: every request past it is refused before it
    could have waited for anything, and the admitted ones are answered once a worker runs."""
    client = client_for(redis_server.url(), timeout=60, max_waiting=5)
    rng = np.random.default_rng(3)
    admitted_inputs = [random_codes(rng, 2) for _ in range(5)]

    async def scenario() -> tuple[list[Any], int]:
        try:
            admitted = [asyncio.ensure_future(client.predict(c)) for c in admitted_inputs]
            deadline = time.monotonic() + 30
            while client.requests_sent < 5:  # all five pushed onto the (unconsumed) queue
                assert time.monotonic() < deadline, "the admitted requests were never sent"
                await asyncio.sleep(0.01)
            refused = 0
            for _ in range(20):
                with pytest.raises(OverloadedError, match="PREDICT_MAX_WAITING=5") as caught:
                    await client.predict(admitted_inputs[0])
                assert caught.value.status_code == 503 and caught.value.retry_after_seconds
                refused += 1
            assert not any(task.done() for task in admitted)  # nothing was answered meanwhile
            stand_in_workers(redis_server.url())
            results = await asyncio.gather(*admitted)
            again = await client.predict(admitted_inputs[0])  # room again once answered
            return [*results, again], refused
        finally:
            await client.aclose()

    results, refused = run(scenario())
    print(f"\nadmitted 5, refused {refused} at once, then 1 admitted again")
    assert refused == 20 and client.requests_shed == 20
    for codes, result in zip([*admitted_inputs, admitted_inputs[0]], results, strict=True):
        assert result.probabilities == pytest.approx(expected(codes), abs=1e-12)


def test_no_reply_is_a_clear_503_after_the_timeout_never_a_hang(
    redis_server: RedisServer, stand_in_workers: StartWorker
) -> None:
    worker = stand_in_workers(redis_server.url(), lambda batch: None)  # loses every task
    client = client_for(redis_server.url(), timeout=0.3)

    async def scenario() -> None:
        try:
            with pytest.raises(PredictionUnavailableError, match=r"answered within 0\.3 s"):
                await client.predict(np.zeros((1, 7), dtype=np.int8))
        finally:
            await client.aclose()

    run(scenario())
    assert len(worker.tasks) == 1  # it was sent, and lost by the worker


def test_redis_down_is_a_quick_503_and_the_client_recovers_when_it_is_back(
    redis_server: RedisServer, stand_in_workers: StartWorker
) -> None:
    stand_in_workers(redis_server.url())
    client = client_for(redis_server.url(), timeout=30)
    codes = np.ones((1, 7), dtype=np.int8)

    async def scenario() -> None:
        try:
            assert (await client.predict(codes)).probabilities == [0.07]
            redis_server.stop()
            started = time.monotonic()
            with pytest.raises(PredictionUnavailableError, match="Redis"):
                await client.predict(codes)
            # fails fast, not after the 30 s timeout (the bound is generous on purpose)
            assert time.monotonic() - started < 5
            redis_server.start()  # same port: the subscription and the pushes reconnect
            assert (await predict_when_back(client, codes)).probabilities == [0.07]
        finally:
            await client.aclose()

    run(scenario())


def test_a_refused_connection_fails_fast() -> None:
    client = client_for(f"redis://127.0.0.1:{free_port()}/0", timeout=30)

    async def scenario() -> None:
        started = time.monotonic()
        try:
            with pytest.raises(PredictionUnavailableError, match="Redis is unavailable"):
                await client.predict(np.ones((1, 7), dtype=np.int8))
        finally:
            await client.aclose()
        assert time.monotonic() - started < 3

    run(scenario())


def test_a_password_and_a_database_number_in_the_url(
    redis_servers: StartServer, stand_in_workers: StartWorker
) -> None:
    server = redis_servers(password="s3cret")
    url = server.url(db=3)
    assert url == f"redis://:s3cret@127.0.0.1:{server.port}/3"
    worker = stand_in_workers(url)  # takes tasks from db 3 only
    client = client_for(url)
    wrong = client_for(f"redis://:wrong@127.0.0.1:{server.port}/3")
    codes = np.ones((1, 7), dtype=np.int8)

    async def scenario() -> None:
        try:
            assert (await client.predict(codes)).probabilities == [0.07]
            with pytest.raises(PredictionUnavailableError, match="Redis"):
                await wrong.predict(codes)
        finally:
            await client.aclose()
            await wrong.aclose()

    run(scenario())
    assert len(worker.tasks) == 1
    plain = redis.Redis.from_url(server.url(db=0))
    try:
        assert plain.dbsize() == 0  # nothing went to db 0
    finally:
        plain.close()


def test_a_unix_socket_url_with_a_database_number(
    redis_servers: StartServer, stand_in_workers: StartWorker
) -> None:
    server = redis_servers(unix_only=True)
    url = server.url(db=2)
    assert url == f"unix://{server.socket_path}?db=2"
    worker = stand_in_workers(url)
    client = client_for(url)
    rng = np.random.default_rng(3)
    inputs = [random_codes(rng, 2) for _ in range(20)]

    async def scenario() -> list[Any]:
        try:
            return await asyncio.gather(*(client.predict(codes) for codes in inputs))
        finally:
            await client.aclose()

    results = run(scenario())
    for codes, result in zip(inputs, results, strict=True):
        assert result.probabilities == pytest.approx(expected(codes), abs=1e-12)
    assert sum(len(t["batch"]) for t in worker.tasks) == len(inputs)


def test_the_task_message_is_what_celery_sends(redis_server: RedisServer) -> None:
    """Against what ``send_task`` itself pushes onto the prediction list of a real Redis: same
    envelope, headers and properties (ids, times and reply address aside), and a body a Celery
    worker decodes into the same (args, kwargs, embed)."""
    settings = Settings(redis_url=redis_server.url())
    batch = [["1", "0123456"], ["2", "6543210"]]
    app = producer_app(settings)
    try:
        app.send_task(
            PREDICT_TASK,
            args=["chan", batch],
            queue=PREDICTION_QUEUE,
            expires=5.0,
            ignore_result=True,
            retry=False,
        )
    finally:
        app.close()
    plain = redis.Redis.from_url(redis_server.url())
    try:
        raw = plain.lpop(PREDICTION_QUEUE)
    finally:
        plain.close()
    assert isinstance(raw, bytes)
    theirs = json.loads(raw)
    ours = json.loads(message_builder(settings)("chan", batch, 5.0, "api@host", "task-1"))

    assert set(ours) == set(theirs)
    for key in ("content-type", "content-encoding"):
        assert ours[key] == theirs[key]
    assert set(ours["headers"]) == set(theirs["headers"])
    varying = {"id", "root_id", "expires", "origin", "argsrepr"}
    for key in set(theirs["headers"]) - varying:
        assert ours["headers"][key] == theirs["headers"][key], key
    assert ours["headers"]["id"] == ours["headers"]["root_id"] == "task-1"
    assert ours["headers"]["ignore_result"] is True
    assert ours["headers"]["argsrepr"] == "(2 requests)"  # no records in a worker's log
    expires = datetime.fromisoformat(ours["headers"]["expires"])
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 5
    assert set(ours["properties"]) == set(theirs["properties"])
    varying = {"correlation_id", "delivery_tag", "reply_to"}
    for key in set(theirs["properties"]) - varying:
        assert ours["properties"][key] == theirs["properties"][key], key
    assert ours["properties"]["delivery_info"] == {"exchange": "", "routing_key": PREDICTION_QUEUE}
    assert ours["properties"]["correlation_id"] == "task-1"

    message, body = decode_task(json.dumps(ours).encode())
    _, their_body = decode_task(raw)
    assert body == their_body == [["chan", batch], {}, their_body[2]]
    assert message.headers["task"] == PREDICT_TASK


def test_the_url_means_what_it_means_to_redis_py() -> None:
    address = redis_address("redis://al%40ice:p%3Aw@db.example:6380/3?client_name=api", 0.5)
    assert (address.host, address.port, address.path) == ("db.example", 6380, None)
    assert address.credentials == ("al@ice", "p:w") and address.db == 3
    assert address.client_name == "api" and address.tls is None
    assert address.connect_timeout == 0.5
    assert redis_address("redis://:pw@h/0?socket_connect_timeout=2", 0.5).connect_timeout == 2
    assert redis_address("redis://:pw@h").credentials == ("pw",)
    unix = redis_address("unix:///run/redis.sock?db=2&password=pw")
    assert (unix.path, unix.db, unix.credentials) == ("/run/redis.sock", 2, ("pw",))
    verified = redis_address("rediss://h:6390/0")
    assert verified.tls is not None and verified.tls.verify_mode == ssl.CERT_REQUIRED
    assert verified.tls.check_hostname
    unverified = redis_address("rediss://h:6390/0?ssl_cert_reqs=none")
    assert unverified.tls is not None and unverified.tls.verify_mode == ssl.CERT_NONE
    with pytest.raises(ValueError):
        redis_address("http://h:6379/0")


def test_an_acl_user_and_a_client_name_in_the_url(
    redis_servers: StartServer, stand_in_workers: StartWorker
) -> None:
    server = redis_servers(user="api", password="s3cret")  # the default user is off
    url = server.url(db=1, client_name="rvt-api")
    assert url.startswith(f"redis://api:s3cret@127.0.0.1:{server.port}/1?")
    worker = stand_in_workers(server.url(db=1))
    client = client_for(url)

    def client_names() -> set[str]:
        admin = redis.Redis.from_url(server.url())
        try:
            return {c["name"] for c in admin.client_list()}
        finally:
            admin.close()

    async def scenario() -> None:
        try:
            assert (await client.predict(np.ones((1, 7), dtype=np.int8))).probabilities == [0.07]
            assert "rvt-api" in await asyncio.to_thread(client_names)
        finally:
            await client.aclose()

    run(scenario())
    assert len(worker.tasks) == 1


@pytest.fixture(scope="module")
def certificates() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rvt-tls-") as folder:
        try:
            yield make_certificates(Path(folder))
        except FileNotFoundError as exc:
            pytest.skip(str(exc))


def test_tls_with_the_url_s_ssl_options(
    redis_servers: StartServer, stand_in_workers: StartWorker, certificates: Path
) -> None:
    server = redis_servers(tls=certificates, password="pw")  # a TLS port only
    ca = str(certificates / "ca.crt")
    worker = stand_in_workers(server.url(ssl_ca_certs=ca))
    verified = client_for(server.url(ssl_ca_certs=ca))  # the certificate and 127.0.0.1 checked
    unverified = client_for(server.url(ssl_cert_reqs="none"))
    untrusted = client_for(server.url(), timeout=30)  # the test CA is not a system one
    codes = np.ones((1, 7), dtype=np.int8)

    async def scenario() -> None:
        try:
            assert (await verified.predict(codes)).probabilities == [0.07]
            assert (await unverified.predict(codes)).probabilities == [0.07]
            started = time.monotonic()
            with pytest.raises(PredictionUnavailableError, match="Redis is unavailable"):
                await untrusted.predict(codes)
            assert time.monotonic() - started < 5  # refused, not timed out
        finally:
            for client in (verified, unverified, untrusted):
                await client.aclose()

    run(scenario())
    assert len(worker.tasks) == 2


def test_resp_parser_takes_replies_split_anywhere() -> None:
    stream = (
        b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n-ERR wrong\r\n"
        b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$10\r\n0123456789\r\n*0\r\n"
    )
    for cut in range(1, len(stream)):
        parser = RespParser()
        parser.feed(stream[:cut])
        got = parser.replies()
        parser.feed(stream[cut:])
        got += parser.replies()
        assert got[:4] == ["OK", 42, b"hello", None]
        assert str(got[4]) == "ERR wrong"
        assert got[5:] == [[b"message", b"c", b"0123456789"], []]


def test_encode_command() -> None:
    assert (
        encode_command("LPUSH", "q", b"x\r\ny")
        == b"*3\r\n$5\r\nLPUSH\r\n$1\r\nq\r\n$4\r\nx\r\ny\r\n"
    )
