"""pigeon's app, Celery-shaped: ``pigeon worker proj.jobs:app`` runs the moved tasks."""

import os

from pigeon.contrib.celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj", url=os.environ.get("PIGEON_URL", "sqlite:///jobs.db"))
app.autodiscover_tasks()  # the installed apps' tasks modules, once Django is set up
