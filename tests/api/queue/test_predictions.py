"""The prediction client against a small in-process Redis stand-in that speaks RESP: batching,
every request getting its own answer, timeouts, outages and the task message's format.

The stand-in plays Redis and the prediction worker at once: an ``LPUSH`` onto the prediction
queue is decoded as Celery would decode it and scored with :func:`shared.model.scoring.score_batch`
(the worker's own code) by a fake model, and the replies are published to the subscriber.
The real worker and Redis are exercised in tests/integration.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import numpy as np
import pytest

from api.queue.messages import task_message
from api.queue.predictions import RedisPredictionClient
from api.queue.resp import RespParser, encode_command
from api.queue.training import producer_app
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.errors import NoProductionModelError, PredictionUnavailableError
from shared.model.scoring import score_batch
from shared.presence import WorkerPresence
from shared.queues import PREDICT_TASK, PREDICTION_QUEUE
from shared.settings import Settings


class SumScorer:
    """A stand-in model whose answer identifies its input: the sum of a row's codes / 100."""

    version = "v7"

    def predict_proba(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes.astype(float).sum(axis=1) / 100.0)


def expected(codes: np.ndarray) -> list[float]:
    return list(SumScorer().predict_proba(codes).tolist())


@dataclass
class FakeRedis:
    """RESP server: SUBSCRIBE, PING, AUTH, SELECT, LPUSH (then the 'worker' answers)."""

    respond: Callable[[list[list[str]]], list[dict[str, Any]] | None]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    subscribers: dict[bytes, list[asyncio.StreamWriter]] = field(default_factory=dict)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{self.port}/0"

    async def stop(self) -> None:
        self.drop_connections()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def drop_connections(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        self.subscribers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        parser = RespParser()
        subscribed = False
        while data := await reader.read(65536):
            parser.feed(data)
            for command in parser.replies():
                name = command[0].upper()
                if name == b"SUBSCRIBE":
                    self.subscribers.setdefault(command[1], []).append(writer)
                    subscribed = True
                    writer.write(b"*3\r\n$9\r\nsubscribe\r\n" + _bulk(command[1]) + b":1\r\n")
                elif name == b"PING":
                    writer.write(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n" if subscribed else b"+PONG\r\n")
                elif name in (b"AUTH", b"SELECT"):
                    writer.write(b"+OK\r\n")
                elif name == b"LPUSH":
                    writer.write(b":1\r\n")
                    self._consume(command[1], command[2])
                else:
                    writer.write(b"-ERR unknown command\r\n")

    def _consume(self, queue: bytes, raw: bytes) -> None:
        """What a Celery worker reads from the message, then what the predict task does."""
        assert queue.decode() == PREDICTION_QUEUE
        message = json.loads(raw)
        assert message["headers"]["task"] == PREDICT_TASK
        (channel, batch), kwargs, _embed = json.loads(message["body"])
        assert kwargs == {}
        self.tasks.append({"message": message, "batch": batch})
        replies = self.respond(batch)
        if replies is None:  # the worker lost this task
            return
        payload = json.dumps({"replies": replies}).encode()
        for subscriber in self.subscribers.get(channel.encode(), []):
            subscriber.write(b"*3\r\n$7\r\nmessage\r\n" + _bulk(channel.encode()) + _bulk(payload))


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def scored(batch: list[list[str]]) -> list[dict[str, Any]]:
    return score_batch(SumScorer(), batch)  # type: ignore[arg-type]


def client_for(url: str, timeout: float = 2.0) -> RedisPredictionClient:
    settings = Settings(redis_url=url, predict_timeout_seconds=timeout, redis_prefix="test")
    beats = WorkerPresence(fakeredis.FakeRedis(), prefix="test")
    beats.announce(PREDICTION_QUEUE, "worker-1")
    return RedisPredictionClient(settings, beats)


SIZES = [len(VOCABULARY[col]) for col in FEATURE_COLUMNS]


def random_codes(rng: np.random.Generator, rows: int) -> np.ndarray:
    return np.column_stack([rng.integers(0, size, rows) for size in SIZES]).astype(np.int8)


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=60))


def test_concurrent_requests_each_get_their_own_answer_from_gathered_batches() -> None:
    async def scenario() -> None:
        redis = FakeRedis(scored)
        client = client_for(await redis.start())
        rng = np.random.default_rng(0)
        inputs = [random_codes(rng, int(rng.integers(1, 6))) for _ in range(300)]
        try:
            results = await asyncio.gather(*(client.predict(codes) for codes in inputs))
        finally:
            await client.aclose()
            await redis.stop()
        for codes, result in zip(inputs, results, strict=True):
            assert result.model_version == "v7"
            assert result.probabilities == pytest.approx(expected(codes), abs=1e-12)
        sizes = [len(task["batch"]) for task in redis.tasks]
        assert sum(sizes) == len(inputs)
        assert len(sizes) < len(inputs) and max(sizes) > 1  # gathered into fewer tasks
        assert client.requests_sent == len(inputs) and client.batches_sent == len(sizes)

    run(scenario())


def test_a_lone_request_goes_out_alone_and_big_ones_are_split_into_batches() -> None:
    async def scenario() -> None:
        redis = FakeRedis(scored)
        client = client_for(await redis.start())
        rng = np.random.default_rng(1)
        try:
            one = random_codes(rng, 1)
            assert (await client.predict(one)).probabilities == pytest.approx(expected(one))
            assert [len(t["batch"]) for t in redis.tasks] == [1]
            big = [random_codes(rng, 1500) for _ in range(3)]
            results = await asyncio.gather(*(client.predict(codes) for codes in big))
        finally:
            await client.aclose()
            await redis.stop()
        for codes, result in zip(big, results, strict=True):
            assert result.probabilities == pytest.approx(expected(codes), abs=1e-12)
        # 1,500 + 1,500 records exceed a batch's 2,000: no task carries two of them
        assert all(len(task["batch"]) == 1 for task in redis.tasks)

    run(scenario())


def test_worker_errors_reach_the_right_request() -> None:
    def respond(batch: list[list[str]]) -> list[dict[str, Any]]:
        return [
            {"id": rid, "error": {"code": "no_production_model", "message": "train first"}}
            if enc[1] == "4"
            else scored([[rid, enc]])[0]
            for rid, enc in batch
        ]

    async def scenario() -> None:
        redis = FakeRedis(respond)
        client = client_for(await redis.start())
        good = np.zeros((1, 7), dtype=np.int8)
        bad = np.array([[0, 4, 0, 0, 0, 0, 0]], dtype=np.int8)
        try:
            results = await asyncio.gather(
                client.predict(good), client.predict(bad), return_exceptions=True
            )
        finally:
            await client.aclose()
            await redis.stop()
        assert results[0].probabilities == [0.0]
        assert isinstance(results[1], NoProductionModelError)

    run(scenario())


def test_no_reply_is_a_clear_503_after_the_timeout_never_a_hang() -> None:
    async def scenario() -> None:
        redis = FakeRedis(lambda batch: None)  # the worker loses every task
        client = client_for(await redis.start(), timeout=0.3)
        try:
            with pytest.raises(PredictionUnavailableError, match=r"answered within 0\.3 s"):
                await client.predict(np.zeros((1, 7), dtype=np.int8))
        finally:
            await client.aclose()
            await redis.stop()

    run(scenario())


def test_redis_down_is_a_503_and_the_client_recovers_when_it_is_back() -> None:
    async def scenario() -> None:
        redis = FakeRedis(scored)
        url = await redis.start()
        client = client_for(url)
        codes = np.ones((1, 7), dtype=np.int8)
        try:
            assert (await client.predict(codes)).probabilities == [0.07]
            redis.drop_connections()
            assert redis.server is not None
            redis.server.close()
            await redis.server.wait_closed()
            with pytest.raises(PredictionUnavailableError, match="Redis"):
                await client.predict(codes)
            # back on the same port: the subscription and the publisher reconnect
            redis.server = await asyncio.start_server(redis._serve, "127.0.0.1", redis.port)
            for _ in range(100):
                try:
                    result = await client.predict(codes)
                    break
                except PredictionUnavailableError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the client did not recover")
            assert result.probabilities == [0.07]
        finally:
            await client.aclose()
            await redis.stop()

    run(scenario())


def test_the_task_message_is_what_celery_sends() -> None:
    """Same headers and properties as ``send_task`` builds (ids, times and origin aside), and
    a body kombu decodes as is (no base64) into Celery's (args, kwargs, embed)."""
    celery = producer_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    batch = [["1", "0123456"], ["2", "6543210"]]
    ours = json.loads(task_message("chan", batch, 5.0, "api@host"))
    theirs = celery.amqp.as_task_v2(
        "task-id", PREDICT_TASK, args=["chan", batch], expires=5.0, ignore_result=True
    )
    assert set(ours["headers"]) == set(theirs.headers)
    for key in ("lang", "task", "eta", "group", "retries", "timelimit", "parent_id", "shadow"):
        assert ours["headers"][key] == theirs.headers[key], key
    assert ours["headers"]["ignore_result"] is True
    assert ours["headers"]["root_id"] == ours["headers"]["id"]
    assert json.loads(ours["body"]) == json.loads(json.dumps(theirs.body))
    assert ours["content-type"] == "application/json" and "body_encoding" not in ours["properties"]
    info = ours["properties"]["delivery_info"]
    assert info == {"exchange": "", "routing_key": PREDICTION_QUEUE}
    assert ours["properties"]["delivery_tag"] and ours["properties"]["priority"] == 0

    from kombu.transport.virtual import Message

    class Channel:
        def decode_body(self, body: str, encoding: str | None) -> str:
            assert encoding is None
            return body

    message = Message(ours, channel=Channel())
    assert message.decode() == [["chan", batch], {}, theirs.body[2]]
    assert message.headers["task"] == PREDICT_TASK


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
