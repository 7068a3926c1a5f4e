"""The dashboard's Starlette application: routes, guard, templates (see ``create_app``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pigeon.app import App
from pigeon.brokers.inspection import BulkAction, JobFilter, apply_bulk
from pigeon.dashboard import reads
from pigeon.dashboard.security import HEADERS, SESSION_COOKIE, SESSION_SECONDS, Guard
from pigeon.filters import build_filter
from pigeon.job import JobState

Handler = Callable[[Request], Awaitable[Response]]
PAGE = 50
FILTER_KEYS = ("state", "task", "queue", "since", "until", "q", "scan")


class Dashboard:
    """One dashboard over one pigeon App."""

    def __init__(self, app: App, guard: Guard, refresh: float) -> None:
        self.app = app
        self.guard = guard
        self.refresh = refresh
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("pigeon.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters.update(stamp=reads.stamp, age=reads.age, text=reads.text)
        self.env = env

    # -- plumbing ------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        user = getattr(request.state, "user", None)
        html = self.env.get_template(name).render(
            root=request.scope.get("root_path", ""),
            user=user,
            external=self.guard.external,
            can_write=user is not None and getattr(request.state, "may_write", False),
            csrf=self.guard.csrf_token(user) if user else "",
            refresh=self.refresh,
            path=request.url.path,
            now=time.time(),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def visitor(self, request: Request) -> tuple[bool, str | None, bool]:
        """(may read, the signed-in user or None, may write)."""
        if self.guard.external:
            user = request.scope.get("pigeon.user")
            return user is not None, user, bool(user and request.scope.get("pigeon.can_write"))
        user = self.guard.session_user(request.cookies.get(SESSION_COOKIE)) or self.guard.basic_user(
            request.headers.get("authorization")
        )
        return (user is not None or self.guard.read_only_anonymous), user, user is not None

    def refuse(self, request: Request) -> Response:
        headers = dict(HEADERS)
        if "text/html" not in request.headers.get("accept", ""):
            headers["WWW-Authenticate"] = 'Basic realm="pigeon"'
        template = "closed.html" if self.guard.closed else "login.html"
        html = self.env.get_template(template).render(
            root=request.scope.get("root_path", ""), next=request.url.path, error=None, user=None
        )
        return HTMLResponse(html, status_code=401, headers=headers)

    def page(self, handler: Handler, *, write: bool = False) -> Handler:
        async def guarded(request: Request) -> Response:
            may_read, user, may_write = self.visitor(request)
            if not may_read:
                return self.refuse(request)
            request.state.user = user
            request.state.may_write = may_write
            if write:
                if user is None or not may_write:
                    return PlainTextResponse(
                        "you may not change anything here", status_code=403, headers=HEADERS
                    )
                form = await request.form()
                if not self.guard.csrf_ok(user, str(form.get("csrf", ""))):
                    return PlainTextResponse("missing or stale CSRF token", status_code=403, headers=HEADERS)
            return await handler(request)

        return guarded

    def redirect(self, request: Request, path: str) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "") + path, status_code=303, headers=HEADERS)

    # -- sign in -------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        root = request.scope.get("root_path", "")
        if request.method == "GET":
            if self.guard.closed:
                return self.refuse(request)
            html = self.env.get_template("login.html").render(
                root=root, next=request.query_params.get("next", "/"), error=None, user=None
            )
            return HTMLResponse(html, headers=HEADERS)
        form = await request.form()
        user, password = str(form.get("user", "")), str(form.get("password", ""))
        target = str(form.get("next", "/"))
        if not target.startswith("/") or target.startswith("//") or "\\" in target:
            target = "/"  # only this site: no open redirect
        if not self.guard.check_password(user, password):
            html = self.env.get_template("login.html").render(
                root=root, next=target, error="wrong user or password", user=None
            )
            return HTMLResponse(html, status_code=401, headers=HEADERS)
        response = RedirectResponse(root + target, status_code=303, headers=HEADERS)
        response.set_cookie(
            SESSION_COOKIE,
            self.guard.session_for(user),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=root or "/",
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = self.redirect(request, "/login")
        response.delete_cookie(SESSION_COOKIE, path=request.scope.get("root_path", "") or "/")
        return response

    # -- pages ---------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        data = await reads.overview(self.app)
        name = "_overview.html" if request.query_params.get("fragment") else "overview.html"
        return self.render(request, name, overview=data)

    def _filter(self, request: Request) -> tuple[JobFilter, dict[str, str], str | None]:
        params = request.query_params
        raw = {k: params.get(k, "") for k in FILTER_KEYS}
        raw["state"] = ",".join(params.getlist("state"))  # what is counted is what is acted on
        try:
            where = build_filter(
                app=self.app,
                states=params.getlist("state"),
                task=raw["task"],
                queue=raw["queue"],
                since=raw["since"],
                until=raw["until"],
                search=raw["q"],
                scan=raw["scan"],
            )
        except ValueError as exc:
            return JobFilter(), raw, str(exc)
        return where, raw, None

    async def jobs(self, request: Request) -> Response:
        where, raw, error = self._filter(request)
        before = request.query_params.get("before") or None
        page = (
            reads.JobPage([], None)
            if error
            else await reads.job_page(self.app, where, limit=PAGE, before=before)
        )
        query = urlencode([(k, v) for k, v in raw.items() if v])
        name = "_jobs.html" if request.query_params.get("fragment") else "jobs.html"
        return self.render(
            request,
            name,
            status=400 if error else 200,
            page=page,
            newest=where.newest,
            raw=raw,
            query=query,
            error=error,
            before=before,
            done=request.query_params.get("done"),
            states=[s.value for s in JobState],
        )

    async def bulk_confirm(self, request: Request) -> Response:
        where, raw, error = self._filter(request)
        action = _action(request.query_params.get("action"))
        if error or action is None:
            return self.render(request, "error.html", status=400, message=error or "unknown action")
        count = await reads.inspection(await self.app.connection()).count_jobs(where)
        query = urlencode([(k, v) for k, v in raw.items() if v])
        page: dict[str, Any] = {"count": count, "raw": raw, "query": query, "newest": where.newest}
        return self.render(request, "confirm.html", action=action.value, **page)

    async def bulk_apply(self, request: Request) -> Response:
        form = await request.form()
        action = _action(str(form.get("action", "")))
        try:
            where = build_filter(
                app=self.app,
                states=[str(s) for s in form.getlist("state")],
                **{k: str(form.get(k, "")) for k in ("task", "queue", "since", "until")},
                search=str(form.get("q", "")),
                scan=str(form.get("scan", "")),
            )
        except ValueError as exc:
            return self.render(request, "error.html", status=400, message=str(exc))
        if action is None:
            return self.render(request, "error.html", status=400, message="unknown action")
        broker = await self.app.connection()
        done = await apply_bulk(broker, where, action, expires_at=time.time() + self.app.failed_ttl)
        if action is BulkAction.RETRY:
            self.app.notifier.notify()
        query = str(form.get("query", ""))
        return self.redirect(request, f"/jobs?{query}&done={action.value}:{done}")

    async def job(self, request: Request) -> Response:
        record = await (await self.app.connection()).get(request.path_params["job_id"])
        if record is None:
            return self.render(request, "error.html", status=404, message="no such job (unknown, or pruned)")
        return self.render(request, "job.html", record=record, details=reads.job_details(record))

    async def job_action(self, request: Request) -> Response:
        job_id, action = request.path_params["job_id"], _action(request.path_params["action"])
        broker = await self.app.connection()
        if action is BulkAction.RETRY:
            ok = await broker.requeue(job_id)
            self.app.notifier.notify()
        elif action is BulkAction.CANCEL:
            ok = await self.app.acancel(job_id)
        elif action is BulkAction.DELETE:
            ok = await reads.inspection(broker).delete_jobs([job_id]) == 1
            if ok:
                return self.redirect(request, "/jobs?done=delete:1")
        else:
            return self.render(request, "error.html", status=400, message="unknown action")
        if not ok:
            message = f"the job could not be {action.value}ed: unknown, or not in a state that allows it"
            return self.render(request, "error.html", status=409, message=message)
        return self.redirect(request, f"/jobs/{job_id}")

    async def queue_action(self, request: Request) -> Response:
        queue, action = request.path_params["queue"], request.path_params["action"]
        inspect = reads.inspection(await self.app.connection())
        if action == "pause":
            await inspect.pause_queue(queue)
        elif action == "resume":
            await inspect.resume_queue(queue)
            self.app.notifier.notify()
        else:
            return self.render(request, "error.html", status=400, message="pause or resume")
        return self.redirect(request, "/")

    async def schedules(self, request: Request) -> Response:
        return self.render(request, "schedules.html", schedules=await reads.schedules(self.app))

    async def run_schedule(self, request: Request) -> Response:
        name = request.path_params["name"]
        found = next((s for s in self.app.schedules if s.name == name), None)
        if found is None:
            return self.render(request, "error.html", status=404, message=f"no schedule {name!r}")
        job = found.task.make_job(found.args, dict(found.kwargs))
        await self.app.aenqueue([job])
        return self.redirect(request, f"/jobs/{job.id}")

    async def metrics(self, request: Request) -> Response:
        from pigeon.metrics import broker_families, render

        body, content_type = render(await broker_families(self.app))
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

    async def events(self, request: Request) -> Response:
        return self.render(request, "events.html", events=await reads.events(self.app))

    def routes(self) -> list[Route | Mount]:
        p = self.page
        return [
            Route("/", p(self.overview)),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", p(self.logout, write=True), methods=["POST"]),
            Route("/jobs", p(self.jobs)),
            Route("/jobs/bulk", p(self.bulk_confirm)),
            Route("/jobs/bulk", p(self.bulk_apply, write=True), methods=["POST"]),
            Route("/jobs/{job_id}", p(self.job)),
            Route("/jobs/{job_id}/{action}", p(self.job_action, write=True), methods=["POST"]),
            Route("/queues/{queue}/{action}", p(self.queue_action, write=True), methods=["POST"]),
            Route("/schedules", p(self.schedules)),
            Route("/schedules/{name}/run", p(self.run_schedule, write=True), methods=["POST"]),
            Route("/events", p(self.events)),
            Route("/metrics", p(self.metrics)),
            Mount("/static", StaticFiles(packages=[("pigeon.dashboard", "static")]), name="static"),
        ]


def _action(text: str | None) -> BulkAction | None:
    try:
        return BulkAction(text or "")
    except ValueError:
        return None


def build(app: App, guard: Guard, refresh: float) -> Starlette:
    dashboard = Dashboard(app, guard, refresh)
    return Starlette(routes=dashboard.routes())
