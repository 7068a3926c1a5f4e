"""pigeon's schema upgrade that keeps every failed attempt's error, and the admin model's column."""

from typing import ClassVar

from django.db import migrations, models

from pigeon.contrib.django import schema


class Migration(migrations.Migration):
    dependencies: ClassVar[list[tuple[str, str]]] = [("pigeon", "0001_initial")]

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        # pigeon's own migrations only go forward: going back keeps the column.
        migrations.RunPython(schema.create, migrations.RunPython.noop, elidable=False),
        # The admin's model is unmanaged: this only keeps the migration state whole.
        migrations.AddField(model_name="job", name="errors", field=models.TextField(null=True)),
    ]
