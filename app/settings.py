"""Every setting of facegate, in one table.

Values come from the defaults below, overridden by a TOML config file (``FACEGATE_CONFIG`` or
``--config``), overridden by environment variables ``FACEGATE_<NAME>``. The table is the single
source of truth: the configuration reference in ``docs/configuration.md`` is generated from it
(``facegate settings-doc``) and a test keeps the two in step.

A running service may re-read its config file (``--config-reload``, every ``--pulling-time``
seconds); a file that fails to parse or validate leaves the previous settings in force, because a
typo in production must not take the service down.
"""
from __future__ import annotations

import logging
import os
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

from inference import descriptor_format

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "FACEGATE_"


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    description: str
    secret: bool = False
    choices: tuple[Any, ...] | None = None


class SettingsError(ValueError):
    """A value that does not parse or is out of range; the message names the setting."""


def _estimator_settings() -> list[Setting]:
    # One flag per registry entry so a new estimator gets its switch without touching this file.
    from inference.registry import ENTRIES

    return [
        Setting(f"enable_{name}", bool, None, f"load the {e.description} estimator "
                "(unset: follow enable_all_estimators_by_default)")
        for name, e in ENTRIES.items()
    ]


SETTINGS: list[Setting] = [
    # service
    Setting("api_host", str, "127.0.0.1", "address the API listens on"),
    Setting("api_port", int, 5000, "port the API listens on"),
    Setting("api_workers", int, 2, "gunicorn worker processes of the API"),
    Setting("flower_port", int, 5555, "port Flower listens on"),
    Setting("flower_basic_auth", str, "", "user:password for Flower (empty: admin and a random password, "
            "generated once into data_dir/flower.auth)", secret=True),
    Setting("log_level", str, "INFO", "logging level", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Setting("data_dir", str, str(ROOT / "var"), "folder for embedded-mode state (SQLite file, the "
            "embedded Redis server's data, image store)"),
    Setting("config_reload", bool, False, "re-read the config file periodically and apply changes"),
    Setting("pulling_time", int, 10, "seconds between config file checks when config_reload is on"),
    # database
    Setting("database_url", str, "", "SQLAlchemy URL (empty: SQLite file in data_dir)", secret=True),
    Setting("database_pool_size", int, 10, "connections kept per process (PostgreSQL)"),
    # celery
    Setting("redis_url", str, "redis://127.0.0.1:6380/0", "Redis for task results, pub/sub (change "
            "announcements), temporary attributes and locks, and the Celery broker unless broker_url is set; "
            "`make run` starts an embedded server for the default", secret=True),
    Setting("broker_url", str, "", "Celery broker (empty: redis_url; amqp://user:password@host:5672// "
            "for RabbitMQ)", secret=True),
    Setting("result_expires_s", int, 86400, "seconds Celery keeps task results"),
    Setting("visibility_timeout_s", int, 15, "Redis broker: seconds after which the tasks of a worker "
            "that died (stopped renewing their lease, which live workers do every sixth of this) go back "
            "on their queue; tasks may run longer than this"),
    Setting("worker_wait_timeout_s", float, 30.0, "seconds a REST call waits for a worker's result "
            "before answering 503"),
    Setting("dependency_timeout_s", float, 2.0, "seconds a request waits for the database, Redis or "
            "the object store to answer before it answers 503 naming the part that is down"),
    # accounts and tokens
    Setting("jwt_secret", str, "", "HS256 signing secret (empty: generated once into data_dir)", secret=True),
    Setting("jwt_ecdsa_key", str, "", "base64 of a PEM ECDSA P-256 private key; when set, tokens are "
            "signed ES256 and HS256 tokens stop working", secret=True),
    Setting("jwt_ecdsa_key_password", str, "", "password of jwt_ecdsa_key, if it is encrypted", secret=True),
    Setting("open_registration", bool, True, "anyone may create user/advanced_user accounts "
            "through POST /accounts"),
    Setting("auth_cache_s", int, 60, "seconds a verified login/password pair is remembered, so Basic "
            "auth does not pay the password hash on every request"),
    # requests
    Setting("max_request_mb", float, 20.0, "largest request body accepted, in MiB"),
    Setting("request_body_timeout_s", float, 30.0, "seconds a client may pause while sending a request "
            "(request line, headers or body); past the first such period it must also average 1 KiB/s. "
            "A slower or stalled request is cut off with 408"),
    Setting("page_size_default", int, 100, "page size when a list request gives none"),
    Setting("page_size_max", int, 1000, "largest page size a list request may ask for"),
    # image store
    Setting("storage_type", str, "local", "image store back-end", choices=("local", "s3")),
    Setting("storage_local_path", str, "", "root of the local image store (empty: data_dir/image_store)"),
    Setting("s3_endpoint_url", str, "", "S3 endpoint (empty: AWS)"),
    Setting("s3_region", str, "us-east-1", "S3 region"),
    Setting("s3_access_key", str, "", "S3 access key", secret=True),
    Setting("s3_secret_key", str, "", "S3 secret key", secret=True),
    Setting("s3_signature_version", str, "s3v4", "S3 request signature version"),
    Setting("s3_verify_ssl", bool, True, "verify the S3 server's TLS certificate"),
    Setting("s3_bucket_prefix", str, "", "prefix of every bucket name on the S3 server, so several "
            "installations can share one S3 account; the API shows names without it"),
    Setting("bucket_ttl_days", int, -1, "default object TTL for buckets created without one "
            "(-1: keep forever)"),
    # faces, lists, temporary attributes
    Setting("face_limit", int, 0, "most faces with descriptors in the installation (the licence "
            "limit; 0: unlimited); a warning is logged from 85% on"),
    Setting("faces_batch_max", int, 1000, "most faces one batch request may create, attach, detach "
            "or delete"),
    Setting("attribute_ttl_default_s", int, 300, "seconds a temporary attribute lives when the "
            "request gives no ttl"),
    Setting("attribute_ttl_max_s", int, 86400, "longest ttl a temporary attribute may ask for, "
            "in seconds"),
    # matcher and verifiers
    Setting("matcher_limit_max", int, 100, "largest `limit` (candidates per reference) a matching "
            "request may ask for"),
    Setting("matcher_references_max", int, 100, "most references one matching or verification "
            "request may give"),
    Setting("matcher_raw_candidates_max", int, 10000, "most candidate descriptors one /matcher/raw "
            "or verification request may give"),
    Setting("matcher_use_cache", bool, True, "answer matching by one list from the matcher workers' "
            "list cache (off: always filter and stream from the database)"),
    Setting("matcher_cache_include", str, "", "comma-separated list ids the matcher cache holds "
            "(empty: every list); read when a matcher worker starts"),
    Setting("matcher_cache_exclude", str, "", "comma-separated list ids the matcher cache never "
            "holds (matching by them uses the database); read when a matcher worker starts"),
    Setting("matcher_cache_poll_s", float, 0.25, "seconds between change-log polls of a matcher "
            "worker's cache; a change announced on Redis wakes it at once"),
    Setting("matcher_cache_wait_s", float, 5.0, "seconds a request waits for the cache to apply "
            "every change made before the request started; past that it matches against the database"),
    Setting("matcher_chunk_size", int, 10000, "rows per chunk when loading the cache and when "
            "streaming descriptors from the database"),
    Setting("matcher_inline_max", int, 0, "raw matching and verification requests comparing at most "
            "this many descriptor pairs run in the API process instead of a matcher task (0: always a task)"),
    Setting("matcher_device", str, "auto", "where a matcher worker's list cache keeps and searches its "
            "lists: cuda (GPU memory, torch), cpu (host memory, numpy with int8 codes) or auto (cuda when "
            "torch sees a GPU; without an NVIDIA driver torch is not even imported); read when a matcher "
            "worker starts", choices=("auto", "cpu", "cuda")),
    # events
    Setting("events_geo_delta_default", float, 0.01, "half the width and half the height, in degrees, "
            "of the geo filter's box when a request gives an origin without longitude_delta or latitude_delta"),
    # notifications
    Setting("callback_timeout_s", float, 5.0, "seconds an http callback's receiver has to answer one delivery"),
    Setting("callback_max_attempts", int, 6, "tries of one http callback delivery before it is marked failed"),
    Setting("callback_backoff_s", float, 2.0, "wait before the second try of a failed http callback; doubled "
            "for each further try, at most 300 s"),
    Setting("ws_queue_max", int, 1000, "events queued for one websocket subscriber; a subscriber that falls "
            "this far behind is disconnected (close code 1008) so it cannot stall the others"),
    # inference
    Setting("enable_all_estimators_by_default", bool, True, "load every estimator unless its "
            "enable_<name> flag says otherwise"),
    Setting("face_descriptor_version", int, descriptor_format.DESCRIPTOR_VERSION, "descriptor version that "
            "face extraction produces and that matching, verification and the matcher cache use unless a "
            "request names one: 101 averaged with the mirrored face (the more accurate: 98.98% against "
            "98.77% on 5,298 held-out LFW pairs), 102 one network pass per face (half the network time); "
            "similarity 0.5 is each version's own L2 distance threshold ("
            + ", ".join(f"{v}: {t}" for v, t in sorted(descriptor_format.DEFAULT_DISTANCE_THRESHOLDS.items())) + ")",
            choices=tuple(sorted(descriptor_format.DESCRIPTOR_LENGTHS))),
    Setting("inference_device", str, "auto", "torch device for neural networks (auto: cuda when "
            "available, else cpu)"),
    Setting("inference_cpu_shards", int, 0, "on the CPU, a batch of several images runs as this many "
            "shards side by side, each on one torch thread (0: one per usable core; 1: whole batches "
            "on torch's own threads)"),
    Setting("inference_batch_max", int, 0, "most images a gpu worker process runs through the models "
            "as one batch (concurrent requests are batched together); 0: follow the device (32 on the "
            "CPU; on CUDA as many as half the device memory holds at 64 MB an image, at most 256)"),
    Setting("inference_batch_wait_ms", float, 2.0, "milliseconds the batcher waits for more images "
            "after the first arrives, when fewer than inference_batch_max are queued"),
    Setting("inference_max_image_pixels", int, 40_000_000, "largest image (width x height) the "
            "remote SDK decodes; larger ones answer 413 before decoding"),
    Setting("image_decode_budget_mb", float, 512.0, "memory in MiB the image decodes of one process may "
            "hold at once; a decode that would pass it waits for others to finish"),
    Setting("sdk_max_images", int, 32, "most images one /sdk, /detector or /iso request may carry"),
    Setting("sdk_url_fetch", bool, False, "let /sdk, /detector and /iso fetch images from http(s) "
            "URLs given in the request (off by default: it lets callers make the API send requests, "
            "SSRF, also to internal addresses)"),
    Setting("sdk_url_timeout_s", float, 5.0, "seconds allowed for fetching one image URL"),
    # long tasks
    Setting("clustering_threshold_default", float, 0.6, "similarity over which the clustering task joins "
            "two objects when its request gives no threshold"),
    Setting("archive_max_size_mb", float, 102400.0, "largest ZIP archive (packed, and each file unpacked) "
            "the estimator task accepts, in MiB"),
    Setting("estimator_disk_roots", str, "", "comma-separated absolute folders the estimator task's "
            "network_disk source may read below (empty: the network_disk source is off)"),
    Setting("estimator_source_timeout_s", float, 10.0, "seconds the estimator task waits for an image source "
            "(FTP, Samba, S3, archive URL) to connect or answer"),
    Setting("schedule_tick_s", float, 10.0, "seconds between beat's checks for task schedules that are due"),
    Setting("fernet_passphrase", str, "", "when set with salt: passwords and tokens in task bodies and "
            "notification policies are encrypted at rest with a Fernet key derived from both "
            "(`facegate tasks reencrypt` converts stored ones)", secret=True),
    Setting("salt", str, "", "salt of the Fernet key derived from fernet_passphrase", secret=True),
    *_estimator_settings(),
]

_BY_NAME = {s.name: s for s in SETTINGS}


def _parse(setting: Setting, raw: Any) -> Any:
    if raw is None:
        return None
    t = setting.type
    try:
        if t is bool:
            if isinstance(raw, bool):
                value = raw
            elif str(raw).strip().lower() in {"1", "true", "yes", "on"}:
                value = True
            elif str(raw).strip().lower() in {"0", "false", "no", "off"}:
                value = False
            else:
                raise ValueError(f"not a boolean: {raw!r}")
        elif t is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(f"not an integer: {raw!r}")
            value = int(raw)
        elif t is float:
            if isinstance(raw, bool):
                raise ValueError(f"not a number: {raw!r}")
            value = float(raw)
        else:
            if not isinstance(raw, (str, int, float)):
                raise ValueError(f"not a string: {raw!r}")
            value = str(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {setting.name}: {exc}") from exc
    if setting.choices and value not in setting.choices:
        raise SettingsError(f"setting {setting.name}: {value!r} is not one of {list(setting.choices)}")
    return value


class Settings:
    """An immutable snapshot of every setting; read attributes by name."""

    def __init__(self, values: dict[str, Any], source: str | None = None) -> None:
        self._values = dict(values)
        self.source = source

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        out = {}
        for name, value in self._values.items():
            if mask_secrets and _BY_NAME[name].secret and value:
                value = _mask(value)
            out[name] = value
        return out

    # Derived values: kept here so every process computes them the same way.
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'facegate.db'}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def effective_storage_path(self) -> Path:
        return Path(self.storage_local_path) if self.storage_local_path else self.data_path / "image_store"


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` made if missing and readable by its owner only: the data folder holds the SQLite
    database, secrets and faces. A folder made group/world-readable by an older version is closed."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stat = folder.stat()
    if stat.st_mode & 0o077 and stat.st_uid == os.getuid():
        folder.chmod(0o700)
    return folder


def _mask(value: Any) -> str:
    """Hide a secret; for URLs keep the scheme, host, port and path so operators can still see where
    it points, and hide the user information (``redis://token@host`` carries a secret as the user)
    and every query value (``?password=...``, ``?sslkey=...``)."""
    text = str(value)
    if "://" not in text:
        return "***"
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name, sep, _ = user.partition(":")
        netloc = f"{name}:***@{host}" if sep else f"***@{host}"
    query = "&".join(f"{pair.partition('=')[0]}=***" for pair in parts.query.split("&") if pair)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def load(config_file: str | os.PathLike[str] | None = None,
         env: dict[str, str] | None = None,
         overrides: dict[str, Any] | None = None) -> Settings:
    """Build settings from defaults < config file < environment < explicit overrides (CLI flags)."""
    env = dict(os.environ if env is None else env)
    config_file = config_file or env.get(f"{ENV_PREFIX}CONFIG") or None
    values = {s.name: s.default for s in SETTINGS}
    if config_file:
        with open(config_file, "rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"{config_file}: {exc}") from exc
        unknown = sorted(set(data) - set(_BY_NAME))
        if unknown:
            raise SettingsError(f"{config_file}: unknown settings {unknown}")
        for name, raw in data.items():
            values[name] = _parse(_BY_NAME[name], raw)
    for s in SETTINGS:
        raw = env.get(ENV_PREFIX + s.name.upper())
        if raw is not None:
            values[s.name] = _parse(s, raw)
    for name, raw in (overrides or {}).items():
        if name not in _BY_NAME:
            raise SettingsError(f"unknown setting {name}")
        values[name] = _parse(_BY_NAME[name], raw)
    return Settings(values, source=str(config_file) if config_file else None)


_current: Settings | None = None
_overrides: dict[str, Any] = {}
_listeners: list[Callable[[Settings, Settings], None]] = []
_current_lock = threading.Lock()


def current() -> Settings:
    """The settings in force in this process (loaded on first use)."""
    global _current
    if _current is None:
        with _current_lock:
            if _current is None:
                _current = load(overrides=_overrides)
    return _current


def set_overrides(overrides: dict[str, Any]) -> Settings:
    """Apply command-line values (they outrank the file and environment) and reload."""
    global _current
    with _current_lock:
        _overrides.clear()
        _overrides.update(overrides)
        _current = load(overrides=_overrides)
    return _current


def replace(settings: Settings) -> None:
    """Put a snapshot in force and tell listeners what changed (tests and reload use this)."""
    global _current
    old = _current
    with _current_lock:
        _current = settings
    if old is not None:
        for listener in list(_listeners):
            try:
                listener(old, settings)
            except Exception:  # a broken listener must not undo an applied reload
                log.exception("settings listener failed")


def on_change(listener: Callable[[Settings, Settings], None]) -> None:
    """Register a callback run after settings change (e.g. re-apply the log level)."""
    _listeners.append(listener)


def reload() -> bool:
    """Re-read file and environment; keep the old settings when the new ones are invalid."""
    old = current()
    try:
        new = load(config_file=old.source, overrides=_overrides)
    except (OSError, SettingsError) as exc:
        log.error("config reload failed, keeping previous settings: %s", exc)
        return False
    if new.as_dict(mask_secrets=False) != old.as_dict(mask_secrets=False):
        changed = sorted(k for k, v in new.as_dict(False).items() if old.as_dict(False).get(k) != v)
        log.info("config reloaded, changed: %s", ", ".join(changed))
        replace(new)
    return True


class ConfigWatcher(threading.Thread):
    """Polls the config file every ``pulling_time`` seconds when ``config_reload`` is on."""

    def __init__(self) -> None:
        super().__init__(name="config-watcher", daemon=True)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(current().pulling_time):
            reload()

    def stop(self) -> None:
        self._stop_event.set()


_watcher: ConfigWatcher | None = None


def start_watcher() -> None:
    """Start the reload thread once per process, only if the settings ask for it."""
    global _watcher
    if current().config_reload and _watcher is None:
        _watcher = ConfigWatcher()
        _watcher.start()


def reference_markdown(settings: Iterable[Setting] = SETTINGS) -> str:
    """The configuration reference as Markdown (docs/configuration.md is this output)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated by `facegate settings-doc` from `app/settings.py`; do not edit by hand.",
        "",
        "Each setting is read from, in rising priority: its default, the TOML file named by "
        "`FACEGATE_CONFIG` (or `--config`), the environment variable `FACEGATE_<NAME>`, and "
        "command-line flags where a command has them.",
        "",
        "| name | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for s in settings:
        default = s.default
        if s.name == "data_dir":
            default = "<repo>/var"
        shown = "" if default in (None, "") else f"`{default}`"
        extra = f" One of {', '.join(f'`{c}`' for c in s.choices)}." if s.choices else ""
        secret = " Secret: masked in `GET /configs`." if s.secret else ""
        lines.append(f"| `{s.name}` | {s.type.__name__} | {shown} | {s.description}.{extra}{secret} |")
    return "\n".join(lines) + "\n"
