"""ASGI entry point: the worker runs on the server's event loop, for the server's lifespan."""

import os

from django.core.asgi import get_asgi_application

from pigeon.contrib.django.asgi import with_worker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")
application = with_worker(get_asgi_application())
