"""System checks for pigeon TASKS backends (run by ``manage.py check`` and at startup)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import connections

from pigeon.contrib.django.conf import BackendConfig, admin_config
from pigeon.errors import ConfigurationError


def check_backend(alias: str, params: dict[str, Any]) -> list[checks.CheckMessage]:
    """Every problem with ``TASKS[alias]``, as check messages."""
    obj = f"TASKS[{alias!r}]"
    try:
        cfg = BackendConfig.from_params(alias, params)
    except ConfigurationError as exc:
        return [checks.Error(str(exc), obj=obj, id="pigeon.E001")]
    found: list[checks.CheckMessage] = []
    if cfg.worker:
        from pigeon.worker.config import WorkerConfig

        try:
            WorkerConfig().replace(**cfg.worker)
        except ConfigurationError as exc:
            found.append(checks.Error(f"OPTIONS['worker']: {exc}", obj=obj, id="pigeon.E002"))
    found += _admin_info(alias, cfg, obj)
    if not cfg.in_django_db:
        return found
    if not apps.is_installed("pigeon.contrib.django"):
        hint = 'Add "pigeon.contrib.django" to INSTALLED_APPS and run `manage.py migrate`.'
        message = "the queue is in the Django database, whose pigeon tables come from pigeon's migration"
        return [*found, checks.Error(message, hint=hint, obj=obj, id="pigeon.E005")]
    if cfg.database not in settings.DATABASES:
        return [*found, checks.Error(f"no database {cfg.database!r} in DATABASES", obj=obj, id="pigeon.E003")]
    try:
        cfg.broker_url()
    except ConfigurationError as exc:
        return [*found, checks.Error(str(exc), obj=obj, id="pigeon.E004")]
    conn = connections[cfg.database]
    if conn.vendor == "sqlite" and conn.settings_dict["OPTIONS"].get("transaction_mode") != "IMMEDIATE":
        found.append(
            checks.Warning(
                f"DATABASES[{cfg.database!r}] is SQLite without OPTIONS['transaction_mode'] = 'IMMEDIATE'",
                hint="A deferred transaction that reads, then enqueues, fails with 'database is locked' "
                "when a worker wrote in between; IMMEDIATE takes the write lock at BEGIN.",
                obj=obj,
                id="pigeon.W001",
            )
        )
    return found


def _admin_info(alias: str, cfg: BackendConfig, obj: str) -> list[checks.CheckMessage]:
    """An Info when the job admin does not show this backend's queue (it shows one: see admin.py)."""
    shown = admin_config()
    same_queue = shown is not None and (shown.database, shown.namespace) == (cfg.database, cfg.namespace)
    if cfg.in_django_db and same_queue:
        return []
    where = "none keeps one there" if shown is None else f"DATABASES[{shown.database!r}]"
    hint = (
        f"The admin reads the queue of the first pigeon backend kept in a Django database ({where}). "
        f"Inspect this one with `manage.py pigeon --backend {alias} status` and `... jobs list`."
    )
    message = "the job admin (/admin/pigeon/job/) does not show this backend's jobs"
    return [checks.Info(message, hint=hint, obj=obj, id="pigeon.I001")]
