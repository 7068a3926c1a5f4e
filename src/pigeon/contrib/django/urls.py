"""The pigeon dashboard inside a Django project, behind Django's own login.

::

    urlpatterns += [path("pigeon/", include("pigeon.contrib.django.urls"))]

Staff users may look; writes (retry, cancel, delete, pause, run now) need the
``pigeon.change_job`` permission (superusers have it). Anyone else is sent to
Django's login page. The dashboard's forms carry its own CSRF token, signed with a
key derived from ``SECRET_KEY``, so they work across the project's processes.
Needs the ``dashboard`` extra. ``PIGEON_DASHBOARD_BACKEND`` (setting) names the TASKS
alias to show (default ``"default"``).
"""

from __future__ import annotations

from django.urls import re_path

from pigeon.contrib.django.dashboard import dashboard

app_name = "pigeon"
urlpatterns = [re_path(r"^(?P<path>.*)$", dashboard, name="dashboard")]
