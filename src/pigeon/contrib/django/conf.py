"""One TASKS backend's configuration: read from settings, checked, turned into a broker URL.

Options live in ``TASKS[alias]["OPTIONS"]``::

    url                 None: the Django database itself; else a broker URL (redis://…, amqp://…)
    store               with an amqp:// url, the broker URL that keeps the jobs' record
                        (None: the Django database itself)
    database            the Django database alias the queue lives in (default "default")
    namespace           the PostgreSQL schema for pigeon's tables (default "pigeon")
    max_attempts        attempts of a django task that does not say (default 1, as Django)
    result_ttl          seconds results are kept (default a day)
    failed_ttl          seconds failures are kept (default a week)
    max_payload         bytes a job's encoded arguments or result may take (default 16 MiB)
    worker_in_process   True: the ASGI/WSGI wrappers start a worker in the web process
    worker              WorkerConfig fields for that worker (concurrency, queues, …)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import connections

from pigeon.brokers.base import takes_store, with_store
from pigeon.errors import ConfigurationError
from pigeon.limits import MAX_BYTES

BACKEND_PATH = "pigeon.contrib.django.PigeonBackend"
_KNOWN = {
    "url",
    "store",
    "database",
    "namespace",
    "max_attempts",
    "result_ttl",
    "failed_ttl",
    "max_payload",
    "worker_in_process",
    "worker",
}


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """The validated options of one pigeon TASKS backend."""

    alias: str
    queues: tuple[str, ...]
    url: str | None = None
    store: str | None = None
    database: str = "default"
    namespace: str = "pigeon"
    max_attempts: int = 1
    result_ttl: float = 24 * 3600
    failed_ttl: float = 7 * 24 * 3600
    max_payload: int = MAX_BYTES
    worker_in_process: bool = False
    worker: Mapping[str, Any] = field(default_factory=dict)

    @property
    def in_django_db(self) -> bool:
        """Whether the queue lives in the Django database (and can join its transactions)."""
        return self.url is None

    @property
    def record_in_django_db(self) -> bool:
        """Whether pigeon's tables live in the Django database (a RabbitMQ url without a store)."""
        return self.url is None or (_takes_store(self.url) and self.store is None)

    @classmethod
    def from_params(cls, alias: str, params: Mapping[str, Any]) -> BackendConfig:
        """The config of ``TASKS[alias]``.

        Raises:
            ConfigurationError: unknown or ill-typed options.
        """
        options = dict(params.get("OPTIONS") or {})
        unknown = sorted(set(options) - _KNOWN)
        if unknown:
            raise ConfigurationError(
                f"TASKS[{alias!r}]['OPTIONS']: unknown option(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_KNOWN))})"
            )
        queues = tuple(params.get("QUEUES") or ("default",))
        url = options.get("url")
        if url is not None and (not isinstance(url, str) or "://" not in url):
            raise ConfigurationError(f"TASKS[{alias!r}]['OPTIONS']['url'] must be a broker URL or None")
        store = options.get("store")
        if store is not None and (not isinstance(store, str) or "://" not in store):
            raise ConfigurationError(f"TASKS[{alias!r}]['OPTIONS']['store'] must be a broker URL or None")
        if store is not None and not _takes_store(url):
            raise ConfigurationError(
                f"TASKS[{alias!r}]['OPTIONS']['store'] is for a RabbitMQ url (amqp://…); "
                "the other brokers keep their own record"
            )
        worker = options.get("worker") or {}
        if not isinstance(worker, Mapping):
            raise ConfigurationError(f"TASKS[{alias!r}]['OPTIONS']['worker'] must be a dict")
        try:
            return cls(
                alias=alias,
                queues=queues,
                url=url,
                store=store,
                database=str(options.get("database", "default")),
                namespace=str(options.get("namespace", "pigeon")),
                max_attempts=int(options.get("max_attempts", 1)),
                result_ttl=float(options.get("result_ttl", 24 * 3600)),
                failed_ttl=float(options.get("failed_ttl", 7 * 24 * 3600)),
                max_payload=int(options.get("max_payload", MAX_BYTES)),
                worker_in_process=bool(options.get("worker_in_process", False)),
                worker=dict(worker),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None

    def broker_url(self) -> str:
        """The broker URL: the explicit one, or one derived from the Django database now.

        Derived on every call, so a test database (whose name Django swaps in
        when it creates it) is followed.

        Raises:
            ConfigurationError: the Django database cannot hold the queue.
        """
        if self.url is not None and _takes_store(self.url):
            return with_store(self.url, self.store or database_url(self.database, self.namespace))
        if self.url is not None:
            return self.url
        return database_url(self.database, self.namespace)


def _takes_store(url: str | None) -> bool:
    return url is not None and takes_store(url)


def database_url(alias: str, namespace: str = "pigeon") -> str:
    """A broker URL for a Django database: ``sqlite:///<absolute path>`` or ``postgresql://…``.

    Raises:
        ConfigurationError: an unknown alias, an in-memory SQLite database, or another engine.
    """
    if alias not in settings.DATABASES:
        raise ConfigurationError(f"no database {alias!r} in DATABASES")
    conn = connections[alias]
    sd = conn.settings_dict
    if conn.vendor == "sqlite":
        name = str(sd["NAME"])
        if conn.is_in_memory_db():  # type: ignore[attr-defined]  # the SQLite wrapper's
            raise ConfigurationError(
                f"DATABASES[{alias!r}] is an in-memory SQLite database, which workers cannot share: "
                "give it a file NAME (and TEST['NAME'] in tests), or set OPTIONS['url']"
            )
        return f"sqlite:///{Path(name).resolve()}"
    if conn.vendor == "postgresql":
        return _postgres_url(sd, namespace)
    raise ConfigurationError(
        f"DATABASES[{alias!r}] uses {conn.vendor}: pigeon keeps jobs in SQLite or PostgreSQL; "
        "set TASKS OPTIONS['url'] to another broker (redis://…)"
    )


def _postgres_url(sd: Mapping[str, Any], namespace: str) -> str:
    user = quote(str(sd.get("USER") or ""), safe="")
    password = quote(str(sd.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = str(sd.get("HOST") or "")
    if host.startswith("/"):  # a Unix socket directory goes in the query
        query: list[tuple[str, str]] = [("host", host)]
        host = ""
    else:
        query = []
    port = f":{sd['PORT']}" if sd.get("PORT") else ""
    opts = sd.get("OPTIONS") or {}
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "service", "passfile"):
        if key in opts:
            query.append((key, str(opts[key])))
    query.append(("namespace", namespace))
    return f"postgresql://{auth}{host}{port}/{quote(str(sd.get('NAME') or ''), safe='')}?{urlencode(query)}"


def backend_configs() -> list[BackendConfig]:
    """Every TASKS backend that is pigeon's, in settings order (bad ones left to ``check()``)."""
    found = []
    for alias, params in getattr(settings, "TASKS", {}).items():
        if params.get("BACKEND") == BACKEND_PATH:
            try:
                found.append(BackendConfig.from_params(alias, params))
            except ConfigurationError:
                continue
    return found


def config_for(alias: str) -> BackendConfig:
    """The config of the pigeon backend ``alias``.

    Raises:
        ConfigurationError: no such TASKS entry, it is not pigeon's, or its options are bad.
    """
    tasks = getattr(settings, "TASKS", {})
    params = tasks.get(alias)
    if params is None or params.get("BACKEND") != BACKEND_PATH:
        raise ConfigurationError(f"TASKS[{alias!r}] is not a {BACKEND_PATH} backend")
    return BackendConfig.from_params(alias, params)


def admin_config() -> BackendConfig | None:
    """The backend the admin shows: the first pigeon backend kept in a Django database."""
    return next((c for c in backend_configs() if c.in_django_db), None)


def jobs_table() -> str:
    """The db_table of the admin's unmanaged Job model.

    PostgreSQL keeps the tables in the namespace's schema; Django quotes
    ``ns"."jobs`` into ``"ns"."jobs"``.
    """
    cfg = admin_config()
    if cfg is None:
        return "pigeon_jobs"
    engine = str(settings.DATABASES.get(cfg.database, {}).get("ENGINE", ""))
    return f'{cfg.namespace}"."jobs' if "postgresql" in engine else "pigeon_jobs"
