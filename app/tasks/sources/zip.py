"""``zip``: a ZIP archive at an http(s) URL (when ``sdk_url_fetch`` allows fetching URLs) or kept
in the image store (``POST /objects``), optionally encrypted with a password (ZipCrypto).

The archive is read once, when the task is split: each part's files are copied into a task blob
(``transient``), so no part downloads the archive again. ``archive_max_size_mb`` bounds the
archive and the sum of the sizes its entries declare; an archive whose entries claim to unpack to
far more than they take (a ZIP bomb) is refused too. Entries are never read past the size they
declare (zipfile stops there), so a lying header cannot unpack more than the limit."""
from __future__ import annotations

import tempfile
import uuid
import zipfile
from typing import IO, Any

import requests
from marshmallow import ValidationError, fields, validate, validates_schema

from app import settings
from app.errors import APIError
from app.image_store import service as image_store
from app.tasks.sources import (
    FileEntry,
    FileUnreadable,
    Source,
    SourceSchema,
    auth_failed,
    max_file_bytes,
    not_found,
    register,
    too_large,
    unavailable,
)

WHAT = "archive URL"
# Deflate packs a photo to about its size; an entry claiming to unpack to this many times what it
# takes (and to more than a few megabytes) is a bomb, not images.
MAX_RATIO = 100
RATIO_FROM_BYTES = 4 * 2**20
_CHUNK = 1 << 20


class ZipSchema(SourceSchema):
    url = fields.String(validate=validate.Regexp(r"^https?://", error="an http or https URL"))
    object_id = fields.UUID(metadata={"description": "an archive stored with POST /objects"})
    password = fields.String(load_only=True, validate=validate.Length(min=1, max=256),
                             metadata={"description": "of an encrypted archive; encrypted at rest, never shown"})

    @validates_schema
    def _one_location(self, data: dict[str, Any], **_: Any) -> None:
        if ("url" in data) == ("object_id" in data):
            raise ValidationError("give either url or object_id", "url")

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        return {"oneOf": [{"required": ["url"]}, {"required": ["object_id"]}]}


def _limit() -> int:
    return int(settings.current().archive_max_size_mb * 2**20)


def _too_large(what: str) -> APIError:
    return APIError("archive_too_large", f"the archive {what} (setting archive_max_size_mb: "
                                         f"{settings.current().archive_max_size_mb:g} MiB)")


@register
class ZipSource(Source):
    name = "zip"
    schema = ZipSchema
    secrets = ("password",)
    transient = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._file: IO[bytes] | None = None
        self._zip: zipfile.ZipFile | None = None

    def check(self) -> None:
        """Only what is cheap: the archive itself is read when the task is split."""
        if "url" in self.config:
            if not settings.current().sdk_url_fetch:
                raise APIError("url_fetch_disabled", "fetching URLs is off (setting sdk_url_fetch)")
        elif image_store.head(image_store.KINDS["object"], self.scope, self.config["object_id"]).size > _limit():
            raise _too_large("is larger than allowed")

    def _download(self) -> IO[bytes]:
        self.check()
        out = tempfile.SpooledTemporaryFile(max_size=64 * 2**20)
        if "object_id" in self.config:
            out.write(image_store.get(image_store.KINDS["object"], self.scope, uuid.UUID(str(self.config["object_id"])))[0])
            return out
        try:
            with requests.get(self.config["url"], timeout=self.timeout, stream=True, allow_redirects=False) as answer:
                if answer.status_code != 200:
                    raise not_found(WHAT, "archive") if answer.status_code in (404, 410) else unavailable(WHAT)
                for chunk in answer.iter_content(_CHUNK):
                    out.write(chunk)
                    if out.tell() > _limit():
                        raise _too_large("is larger than allowed")
        except requests.RequestException:
            raise unavailable(WHAT) from None
        return out

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is not None:
            return self._zip
        self._file = self._download()
        try:
            archive = zipfile.ZipFile(self._file)
        except (zipfile.BadZipFile, ValueError, OSError):
            raise APIError("bad_archive", "the file is not a ZIP archive, or it is damaged") from None
        entries = [e for e in archive.infolist() if not e.is_dir()]
        if sum(e.file_size for e in entries) > _limit():
            raise _too_large("unpacks to more than allowed")
        if any(e.file_size > RATIO_FROM_BYTES and e.file_size > MAX_RATIO * max(e.compress_size, 1) for e in entries):
            raise _too_large(f"has entries that unpack to over {MAX_RATIO} times their packed size")
        encrypted = next((e for e in entries if e.flag_bits & 0x1), None)
        password = self.config.get("password")
        if encrypted is not None:
            if password is None:
                raise APIError("source_auth_failed", "the archive is encrypted: give its password")
            try:
                archive.open(encrypted, pwd=password.encode()).close()  # ZipCrypto checks the password on open
            except RuntimeError:
                raise auth_failed("archive") from None
            except (NotImplementedError, zipfile.BadZipFile):
                raise APIError("bad_archive", "the archive is encrypted or compressed in a way this platform "
                                              "cannot read (ZipCrypto and deflate are)") from None
        self._zip = archive
        return archive

    def listing(self) -> list[FileEntry]:
        return [FileEntry(e.filename, e.file_size) for e in self._archive().infolist() if not e.is_dir()]

    def read(self, name: str) -> bytes:
        archive, limit = self._archive(), max_file_bytes()
        password = self.config.get("password")
        try:
            entry = archive.getinfo(name)
            if entry.file_size > limit:
                raise too_large(name)
            with archive.open(entry, pwd=password.encode() if password else None) as f:
                return f.read(limit + 1)
        except (KeyError, RuntimeError, NotImplementedError, zipfile.BadZipFile, OSError, EOFError):
            raise FileUnreadable(f"file '{name}' could not be read from the archive") from None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._file is not None:
            self._file.close()
