"""pigeon's tables (its own SQL, see pigeon.contrib.django.schema) and the admin's Job model."""

from typing import ClassVar

from django.db import migrations, models

from pigeon.contrib.django import schema
from pigeon.contrib.django.conf import jobs_table


class Migration(migrations.Migration):
    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.RunPython(schema.create, schema.drop, elidable=False),
        migrations.CreateModel(
            name="Job",
            fields=[
                ("id", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("task", models.TextField()),
                ("queue", models.TextField()),
                ("priority", models.IntegerField()),
                (
                    "state",
                    models.TextField(
                        choices=[
                            ("queued", "queued"),
                            ("scheduled", "scheduled"),
                            ("running", "running"),
                            ("succeeded", "succeeded"),
                            ("failed", "failed"),
                            ("cancelled", "cancelled"),
                        ]
                    ),
                ),
                ("envelope", models.BinaryField()),
                ("max_attempts", models.IntegerField()),
                ("attempts", models.IntegerField()),
                ("unique_key", models.TextField(null=True)),
                ("run_at", models.FloatField()),
                ("enqueued_at", models.FloatField()),
                ("worker_id", models.TextField(null=True)),
                ("started_at", models.FloatField(null=True)),
                ("finished_at", models.FloatField(null=True)),
                ("result", models.BinaryField(null=True)),
                ("error", models.BinaryField(null=True)),
            ],
            options={
                "managed": False,
                "db_table": jobs_table(),
                "ordering": ("-id",),
                "verbose_name": "job",
            },
        ),
    ]
