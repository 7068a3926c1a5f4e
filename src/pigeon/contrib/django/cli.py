"""The Django project's apps as ``module:attribute`` targets for the ``pigeon`` CLI.

``pigeon.contrib.django.cli:app`` is ``get_app("default")``;
``pigeon.contrib.django.cli:<alias>`` any other TASKS alias. Django is set up
on first access (``DJANGO_SETTINGS_MODULE`` must be set), so
``pigeon worker pigeon.contrib.django.cli:app`` and the child processes of
``--processes N`` work outside ``manage.py`` too.
"""

from __future__ import annotations

from typing import Any

TARGET = "pigeon.contrib.django.cli:{}"


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    from pigeon.contrib.django._app import get_app
    from pigeon.errors import ConfigurationError

    try:
        return get_app("default" if name == "app" else name)
    except ConfigurationError as exc:
        raise AttributeError(str(exc)) from None
