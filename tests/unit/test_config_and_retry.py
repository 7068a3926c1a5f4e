from __future__ import annotations

import pytest

from pigeon import Backoff, ConfigurationError, Fixed, WorkerConfig


def test_from_env() -> None:
    cfg = WorkerConfig.from_env({"PIGEON_QUEUES": "a, b", "PIGEON_CONCURRENCY": "64", "PIGEON_BURST": "true"})
    assert cfg.queues == ("a", "b") and cfg.concurrency == 64 and cfg.burst


def test_queue_limits_from_env() -> None:
    cfg = WorkerConfig.from_env({"PIGEON_QUEUES": "default,images", "PIGEON_QUEUE_LIMITS": "images=2"})
    assert cfg.queue_limits == (("images", 2),)
    with pytest.raises(ConfigurationError, match="PIGEON_QUEUE_LIMITS"):
        WorkerConfig.from_env({"PIGEON_QUEUES": "default,images", "PIGEON_QUEUE_LIMITS": "images"})


@pytest.mark.parametrize("raw", ["ture", "2", "enabled"])
def test_a_mistyped_flag_is_an_error_not_off(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="PIGEON_BURST"):
        WorkerConfig.from_env({"PIGEON_BURST": raw})
    assert not WorkerConfig.from_env({"PIGEON_BURST": "off"}).burst


def test_bad_config() -> None:
    with pytest.raises(ConfigurationError):
        WorkerConfig.from_env({"PIGEON_CONCURRENCY": "lots"})
    with pytest.raises(ConfigurationError):
        WorkerConfig(concurrency=0)
    with pytest.raises(ConfigurationError):
        WorkerConfig(heartbeat=30, lease=10)
    with pytest.raises(ConfigurationError, match="unknown worker option"):
        WorkerConfig().replace(speed=11)


def test_backoff_grows_and_is_capped() -> None:
    b = Backoff(base=1, factor=2, cap=10, jitter=False)
    assert [b.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    jittered = Backoff(base=4, jitter=True)
    assert all(2 <= jittered.delay(1) <= 4 for _ in range(100))
    assert Fixed(3).delay(9) == 3
