"""A Django project half way from Celery to pigeon (docs/migrating-from-celery.md)."""

from proj.celery import app as celery_app  # Celery's app, as every Celery + Django project has it
from proj.jobs import app as pigeon_app  # pigeon's, added in step 1

__all__ = ["celery_app", "pigeon_app"]
