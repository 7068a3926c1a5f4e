"""Settings of the example project."""

import os
from pathlib import Path

from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "celery-migration-example-not-secret"
DEBUG = True
USE_TZ = True
INSTALLED_APPS = ["shop", "reports"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}

CELERY_BROKER_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_TIMEZONE = "Europe/Oslo"
CELERY_BEAT_SCHEDULE = {
    "count-orders-nightly": {"task": "reports.tasks.count_orders", "schedule": crontab(minute=0, hour=2)},
    "send-digest": {"task": "shop.tasks.send_digest", "schedule": 300.0, "kwargs": {"limit": 10}},
}

# Apps whose tasks pigeon runs now. Celery producers still running (an old process in a
# rolling deploy, send_task by name, beat) route their tasks to the bridge's queue. The
# example reads the list from the environment so the test suite can replay the steps.
PORTED = [m for m in os.environ.get("PORTED_APPS", "").split(",") if m]
CELERY_TASK_ROUTES = {f"{m}.tasks.*": {"queue": "pigeon"} for m in PORTED}
