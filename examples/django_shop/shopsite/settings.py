"""A small shop whose background jobs live in its own SQLite database."""

import os
from pathlib import Path

BASE_DIR = Path(os.environ.get("SHOP_DIR", Path(__file__).resolve().parent.parent))
SECRET_KEY = "django-shop-example-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "pigeon.contrib.django",
    "shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "shopsite.urls"
WSGI_APPLICATION = "shopsite.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "shop.sqlite3",
        # A transaction takes the write lock at BEGIN, so enqueueing after a read never fails.
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}

TASKS = {
    "default": {
        "BACKEND": "pigeon.contrib.django.PigeonBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {
            "url": None,  # the queue lives in DATABASES["default"]
            "worker_in_process": True,  # wsgi.py / asgi.py start a worker in the web process
            "worker": {"concurrency": 4},
        },
    }
}

# Emails land as files in ./sent_emails (an SMTP sink works too: EMAIL_BACKEND smtp + EMAIL_PORT).
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = BASE_DIR / "sent_emails"
DEFAULT_FROM_EMAIL = "shop@example.com"
