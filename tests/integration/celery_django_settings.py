"""A Django project whose Celery keeps results in its database (django-celery-results)."""

import os

SECRET_KEY = "celery-results-test-not-secret"
USE_TZ = True
INSTALLED_APPS = ["django_celery_results"]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("CELERY_RESULTS_DB", "")}
}
