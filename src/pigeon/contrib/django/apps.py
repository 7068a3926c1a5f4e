"""The Django app: ``INSTALLED_APPS += ["pigeon.contrib.django"]``.

It brings the migration that creates pigeon's tables in the Django database,
the admin, and ``manage.py pigeon``. It starts nothing: a worker runs under
``manage.py pigeon worker`` or, when asked, in the web process (asgi.py, wsgi.py).
"""

from __future__ import annotations

from django.apps import AppConfig


class PigeonConfig(AppConfig):
    name = "pigeon.contrib.django"
    label = "pigeon"
    verbose_name = "pigeon"
    default_auto_field = "django.db.models.BigAutoField"
