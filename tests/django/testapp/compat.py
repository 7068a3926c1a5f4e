"""The task decorator the test tasks use: Django's own on 6.1, pigeon's on 6.0.

Django 6.1's ``@task(max_attempts=3)`` passes pigeon's options to the backend's task
class; 6.0's decorator takes no extra options (a TypeError from Django), and
``pigeon.contrib.django.task`` is the way there. Running the suite on both versions
covers both paths.
"""

from typing import TYPE_CHECKING

import django

if TYPE_CHECKING:  # the type both give: Django 6.1's decorator makes the same PigeonTask
    from pigeon.contrib.django import task
elif django.VERSION >= (6, 1):
    from django.tasks import task
else:
    from pigeon.contrib.django import task

__all__ = ["task"]
