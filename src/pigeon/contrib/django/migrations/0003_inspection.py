"""pigeon's schema upgrade for operators: paused queues, jobs listed by task."""

from typing import ClassVar

from django.db import migrations

from pigeon.contrib.django import schema


class Migration(migrations.Migration):
    dependencies: ClassVar[list[tuple[str, str]]] = [("pigeon", "0002_error_history")]

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        # pigeon's own migrations only go forward.
        migrations.RunPython(schema.create, migrations.RunPython.noop, elidable=False),
    ]
