"""The no-op Django task of ``django_send.py`` (imported once its settings are configured)."""

from __future__ import annotations

from django.tasks import task


@task
def noop() -> None:
    """Nothing: the figure is the send."""
