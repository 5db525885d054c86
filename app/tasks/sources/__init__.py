"""Image sources of the estimator task: where its images come from (a ZIP archive, S3, a folder,
FTP, Samba), one module each.

As Redash registers its query runners, a source type names itself (``type`` in the request), gives
the marshmallow schema of its configuration, says whether it is usable here (``enabled``) and
lists and reads files. The estimator lists once, when the task is split (small: names and sizes),
and each part reads its own files by name; a file gone or unreadable by then is that file's
error, never the task's. Failures of the whole source (refused credentials, no such bucket or
folder, nothing answering) are :class:`APIError` of the kinds ``source_auth_failed``,
``source_not_found`` and ``source_unavailable``, whose details never name hosts or paths.
"""
from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from marshmallow import Schema, ValidationError, fields, validate

from app import settings
from app.errors import APIError
from app.schemas import StrictSchema
from app.scope import Scope


@dataclass(frozen=True)
class FileEntry:
    name: str  # the source's key of the file: what ``read`` takes and the results show
    size: int | None


class FileUnreadable(Exception):
    """One file could not be read (gone since the listing, no permission, too large): the
    message is the client's, naming only the file."""


class SourceSchema(StrictSchema):
    """What every source's configuration has: its type, and the filters of file names."""

    type = fields.String(required=True)
    prefix = fields.String(load_default="", validate=validate.Length(max=1024),
                           metadata={"description": "only files whose name (S3: whose key) starts with it"})
    postfix = fields.String(load_default="", validate=validate.Length(max=1024),
                            metadata={"description": "only files whose name ends with it"})


class Source:
    """One configured source, opened for a task by :func:`open_source`; a context manager that
    closes its connections."""

    name: ClassVar[str]
    schema: ClassVar[type[Schema]]
    # configuration fields holding secrets (dotted, below the source), encrypted at rest
    secrets: ClassVar[tuple[str, ...]] = ()
    # files that live only as long as the task (a downloaded archive): the split copies each
    # part's files into a task blob, because parts may run on machines the download is not on
    transient: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any], scope: Scope) -> None:
        self.config = config
        self.scope = scope
        self.timeout = settings.current().estimator_source_timeout_s

    @classmethod
    def enabled(cls) -> bool:
        return True

    def check(self) -> None:
        """At creation, fail fast (short timeouts) on what would fail every part: credentials,
        a missing bucket or folder, a host that does not answer. Sources override it with a
        cheaper probe than a whole listing."""
        self.listing()

    def listing(self) -> list[FileEntry]:
        """Every file of the source, before the prefix and postfix filters."""
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        """The bytes of one listed file; :class:`FileUnreadable` when that one file fails."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def files(self) -> list[FileEntry]:
        """The files the task processes, by name."""
        prefix, postfix = self.config.get("prefix", ""), self.config.get("postfix", "")
        return sorted((f for f in self.listing() if self.selected(f.name, prefix, postfix)), key=lambda f: f.name)

    def selected(self, name: str, prefix: str, postfix: str) -> bool:
        """Whether the filters take a file: by its base name (S3 matches the prefix on the key)."""
        base = posixpath.basename(name)
        return base.startswith(prefix) and base.endswith(postfix)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


_SOURCES: dict[str, type[Source]] = {}


def register(source: type[Source]) -> type[Source]:
    if source.name in _SOURCES:
        raise ValueError(f"image source {source.name} registered twice")
    _SOURCES[source.name] = source
    return source


def sources() -> dict[str, type[Source]]:
    """Every source type, by name (importing the modules of this package registers them)."""
    from app.tasks.sources import disk, ftp, s3, samba, zip  # noqa: F401

    return dict(_SOURCES)


def secrets() -> tuple[str, ...]:
    """The secret fields of every source type, dotted below the source."""
    return tuple(dict.fromkeys(path for source in sources().values() for path in source.secrets))


def open_source(config: Mapping[str, Any], scope: Scope) -> Source:
    """The source of a loaded configuration; 403 when its type is off here."""
    source = sources()[config["type"]]
    if not source.enabled():
        raise APIError("task_type_disabled", f"image source '{source.name}' is disabled or lacks what it needs here")
    return source(config, scope)


def _documented() -> list[dict[str, Any]]:
    """Each source type's configuration as a JSON schema of its own (inline, for the OpenAPI
    document): its fields, ``type`` fixed to its name, and its rules between fields."""
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    plugin = MarshmallowPlugin(schema_name_resolver=lambda schema: None)  # None: nested schemas inline
    APISpec("sources", "1", "3.0.3", plugins=[plugin])
    out = []
    for name, source in sorted(sources().items()):
        schema = plugin.converter.schema2jsonschema(source.schema)
        schema["properties"]["type"]["enum"] = [name]
        rules = getattr(source.schema, "openapi_rules", None)
        out.append({**schema, **(rules() if rules else {})})
    return out


class SourceField(fields.Field):
    """A source's configuration, loaded by the schema its ``type`` names."""

    def __init__(self, **kwargs: Any) -> None:
        meta = kwargs.pop("metadata", {})
        meta.setdefault("description", "where the images are: type zip, s3, network_disk, ftp or samba, "
                                       "with that type's fields")
        super().__init__(metadata={"oneOf": _documented(), **meta}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        known = sources()
        if not isinstance(value, Mapping) or not isinstance(value.get("type"), str) or value["type"] not in known:
            raise ValidationError(f"an object whose type is one of {sorted(known)}")
        return known[value["type"]].schema().load(value)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


def pack(source: Source, names: list[str]) -> bytes:
    """The files of one part of a transient source, as an uncompressed ZIP to keep until the part
    runs; a file that cannot be read is left out, and its part reports it unreadable."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as packed:
        for name in names:
            try:
                packed.writestr(name, source.read(name))
            except FileUnreadable:
                continue
    return out.getvalue()


class Packed:
    """Reads the files :func:`pack` kept (what a part of a transient source reads instead of it)."""

    def __init__(self, data: bytes) -> None:
        self._zip = zipfile.ZipFile(io.BytesIO(data))

    def read(self, name: str) -> bytes:
        try:
            return self._zip.read(name)
        except KeyError:
            raise FileUnreadable(f"file '{name}' could not be read from the archive") from None

    def close(self) -> None:
        self._zip.close()


def max_file_bytes() -> int:
    """The largest file a source reads: an image as large as a request may carry (``max_request_mb``)."""
    return int(settings.current().max_request_mb * 2**20)


def too_large(name: str) -> FileUnreadable:
    return FileUnreadable(f"file '{name}' is larger than max_request_mb allows")


def unavailable(what: str) -> APIError:
    return APIError("source_unavailable", f"the {what} did not answer, or the connection failed")


def auth_failed(what: str) -> APIError:
    return APIError("source_auth_failed", f"the {what} refused the credentials")


def not_found(what: str, thing: str = "folder") -> APIError:
    return APIError("source_not_found", f"the {what} has no such {thing}")
