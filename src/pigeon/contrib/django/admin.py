"""The admin: jobs by state, queue and task; arguments, result, traceback; retry and cancel.

Registered only when a pigeon backend keeps its queue in a Django database.
Staff only (the admin's own rule); the actions need the ``pigeon.change_job``
permission and go through the broker, so the job state machine stays pigeon's.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from pigeon.contrib.django._app import get_app
from pigeon.contrib.django.conf import admin_config
from pigeon.contrib.django.models import Job


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Job]
else:  # ModelAdmin is generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin


class JobAdmin(_ModelAdmin):
    list_display = ("id", "task", "queue", "state", "attempts_shown", "priority", "enqueued")
    list_filter = ("state", "queue", "task")
    search_fields = ("id", "task", "unique_key")
    actions = ("retry_jobs", "cancel_jobs")
    fields = (
        "id",
        "task",
        "queue",
        "state",
        "attempts_shown",
        "priority",
        "unique_key",
        "enqueued",
        "started",
        "finished",
        "worker_id",
        "arguments_shown",
        "result_shown",
        "error_shown",
        "traceback_shown",
        "history_shown",
    )
    readonly_fields = fields
    show_full_result_count = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = admin_config()
        self.backend_alias = cfg.alias if cfg else "default"
        self.database = cfg.database if cfg else "default"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        lazy = ("envelope", "result", "error", "errors")
        return super().get_queryset(request).using(self.database).defer(*lazy)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Job, form: Any, change: bool) -> None:
        """Jobs change only through the broker (the actions); a saved form writes nothing."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        extra = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().changeform_view(request, object_id, form_url, extra)

    @admin.display(description="attempts")
    def attempts_shown(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="enqueued", ordering="enqueued_at")
    def enqueued(self, job: Job) -> Any:
        return job.when("enqueued_at")

    @admin.display(description="started")
    def started(self, job: Job) -> Any:
        return job.when("started_at")

    @admin.display(description="finished")
    def finished(self, job: Job) -> Any:
        return job.when("finished_at")

    @admin.display(description="arguments")
    def arguments_shown(self, job: Job) -> str:
        return format_html("<pre>{}</pre>", _pretty(job.arguments()))

    @admin.display(description="result")
    def result_shown(self, job: Job) -> str:
        return "" if job.result is None else format_html("<pre>{}</pre>", _pretty(job.result_value()))

    @admin.display(description="error")
    def error_shown(self, job: Job) -> str:
        err = job.error_info()
        return "" if err is None else f"{err.type}: {err.message}"

    @admin.display(description="traceback")
    def traceback_shown(self, job: Job) -> str:
        err = job.error_info()
        return "" if err is None or not err.traceback else format_html("<pre>{}</pre>", err.traceback)

    @admin.display(description="failed attempts")
    def history_shown(self, job: Job) -> str:
        lines = [f"{i}. {e.type}: {e.message}" for i, e in enumerate(job.error_history(), 1)]
        return format_html("<pre>{}</pre>", "\n".join(lines)) if lines else ""

    def _apply(self, request: HttpRequest, jobs: QuerySet[Job], verb: str, action: Any) -> None:
        app = get_app(self.backend_alias)
        ids = list(jobs.values_list("id", flat=True))
        done = [i for i in ids if app.portal_call(action(app, i))]
        if done:
            self.message_user(request, f"{verb} {len(done)} job(s).", messages.SUCCESS)
        if len(done) < len(ids):
            left = len(ids) - len(done)
            self.message_user(request, f"{left} job(s) were not in a state that allows it.", messages.WARNING)

    @admin.action(description="Retry the selected failed or cancelled jobs", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        async def retry(app: Any, job_id: str) -> bool:
            done: bool = await (await app.connection()).requeue(job_id)
            app.notifier.notify()
            return done

        self._apply(request, queryset, "Retried", retry)

    @admin.action(description="Cancel the selected unfinished jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply(request, queryset, "Cancelled", lambda app, i: app.acancel(i))


if admin_config() is not None:
    admin.site.register(Job, JobAdmin)
