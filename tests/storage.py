"""Writing straight into a broker's storage, as anything with access to the queue could."""

from __future__ import annotations

import asyncio
import pickle
import sqlite3
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import pytest


class _Payload:
    """Unpickling this runs a shell command: a message must never be unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)


def hostile_envelopes(job_id: str, marker: str) -> dict[str, bytes]:
    """Stored envelopes pigeon did not write, by kind; ``marker`` is created if one is unpickled."""
    deep = b"[" * 100_000 + b"]" * 100_000
    return {
        "not json": b"this is not json {",
        "wrong shape": b'[1, 2, "three"]',
        "invalid utf-8": b'{"id": "' + job_id.encode() + b'", "task": "\xff\xfe\xfd"}',
        "pickle": pickle.dumps(_Payload(marker)),
        "huge integer": b'{"id": "%s", "task": "t", "max_attempts": %s}' % (job_id.encode(), b"9" * 5000),
        "deep nesting": b'{"id": "%s", "task": "t", "then": %s}' % (job_id.encode(), deep),
        "another id": b'{"id": "someone-else", "task": "t"}',
        "empty": b"",
    }


def can_overwrite(url: str) -> None:
    """Skip unless the broker keeps envelopes as bytes someone else could write."""
    if urlsplit(url).scheme == "memory":
        pytest.skip("the memory broker keeps Job objects, not bytes: nothing else can write into it")


async def overwrite_envelope(url: str, job_id: str, data: bytes) -> None:
    """Replace a stored job's envelope with ``data``, bypassing pigeon entirely."""
    scheme = urlsplit(url).scheme
    if scheme.startswith("amqp"):  # RabbitMQ carries only job ids: the envelope is in the store
        await overwrite_envelope(parse_qs(urlsplit(url).query)["store"][0], job_id, data)
    elif scheme == "sqlite":
        await asyncio.to_thread(_sqlite_overwrite, urlsplit(url).path[1:], job_id, data)
    elif scheme.startswith("postgres"):
        await asyncio.to_thread(_postgres_overwrite, url, job_id, data)
    elif scheme.startswith("redis"):
        await _redis_overwrite(url, job_id, data)
    else:
        raise AssertionError(f"cannot write into {scheme} storage")


def _sqlite_overwrite(path: str, job_id: str, data: bytes) -> None:
    db = sqlite3.connect(path, timeout=10)
    try:
        with db:
            cur = db.execute("UPDATE pigeon_jobs SET envelope = ? WHERE id = ?", (data, job_id))
            assert cur.rowcount == 1
    finally:
        db.close()


def _postgres_overwrite(url: str, job_id: str, data: bytes) -> None:
    import psycopg
    from psycopg import sql

    conninfo, namespace = _split_namespace(url)
    with psycopg.connect(urlunsplit(urlsplit(conninfo)._replace(scheme="postgresql")), autocommit=True) as c:
        query = sql.SQL("UPDATE {}.jobs SET envelope = %s WHERE id = %s").format(sql.Identifier(namespace))
        assert c.execute(query, (data, job_id)).rowcount == 1


def _split_namespace(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    namespace = next((v for k, v in query if k == "namespace"), "pigeon")
    rest = urlencode([(k, v) for k, v in query if k != "namespace"])
    return urlunsplit(parts._replace(query=rest)), namespace


async def _redis_overwrite(url: str, job_id: str, data: bytes) -> None:
    import redis.asyncio as aioredis

    server, namespace = _split_namespace(url)
    client: Any
    if urlsplit(server).scheme.endswith("+cluster"):  # keys are hash-tagged: {namespace}:...
        from redis.asyncio.cluster import RedisCluster

        host, port = urlsplit(server).netloc.split(",")[0].rsplit(":", 1)
        client, prefix = RedisCluster(host=host, port=int(port)), f"{{{namespace}}}:"
    elif urlsplit(server).scheme.endswith("+sentinel"):  # the master the sentinels name
        from pigeon.brokers.redis_connect import SentinelService, new_client

        client = new_client(server, [], 0, "tests", SentinelService.from_url(server))
        prefix = f"{namespace}:"
    else:
        client, prefix = aioredis.Redis.from_url(server), f"{namespace}:"
    try:
        assert await client.hset(f"{prefix}job:{job_id}", "env", data) == 0  # replaced, not added
    finally:
        await client.aclose()
