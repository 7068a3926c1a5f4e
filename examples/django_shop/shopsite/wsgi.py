"""WSGI entry point: Django, plus a pigeon worker thread (OPTIONS["worker_in_process"])."""

import os

from pigeon.contrib.django.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")
application = get_wsgi_application()
