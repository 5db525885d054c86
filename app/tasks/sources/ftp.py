"""``ftp``: a folder of an FTP server, read with ftplib (one session per split or part)."""
from __future__ import annotations

import ftplib
import io
import posixpath
from typing import Any

from marshmallow import fields, validate

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

WHAT = "FTP server"


class FtpSchema(SourceSchema):
    host = fields.String(required=True, validate=validate.Length(min=1, max=255))
    port = fields.Integer(load_default=21, validate=validate.Range(min=1, max=65535))
    user = fields.String(required=True, validate=validate.Length(min=1, max=256))
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=256),
                             metadata={"description": "encrypted at rest; never shown"})
    max_sessions = fields.Integer(load_default=1, validate=validate.Range(min=1, max=64),
                                  metadata={"description": "sessions the task may hold on the server at once"})
    path = fields.String(load_default="/", validate=validate.Length(min=1, max=4096))
    recursive = fields.Boolean(load_default=False)


class _TooLarge(Exception):
    pass


@register
class FtpSource(Source):
    name = "ftp"
    schema = FtpSchema
    secrets = ("password",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._ftp: ftplib.FTP | None = None

    def _session(self) -> ftplib.FTP:
        if self._ftp is None:
            ftp = ftplib.FTP(timeout=self.timeout)
            try:
                ftp.connect(self.config["host"], self.config["port"])
            except (OSError, EOFError, ftplib.Error):
                raise unavailable(WHAT) from None
            try:
                ftp.login(self.config["user"], self.config["password"])
            except ftplib.error_perm:
                ftp.close()
                raise auth_failed(WHAT) from None
            except (OSError, EOFError, ftplib.Error):
                ftp.close()
                raise unavailable(WHAT) from None
            self._ftp = ftp
        return self._ftp

    def close(self) -> None:
        if self._ftp is not None:
            try:
                self._ftp.quit()
            except (OSError, EOFError, ftplib.Error):
                self._ftp.close()
            self._ftp = None

    def _root(self) -> str:
        return posixpath.normpath("/" + self.config["path"].strip("/"))

    def _entries(self, ftp: ftplib.FTP, folder: str) -> list[tuple[str, bool, int | None]]:
        """(name, is a folder, size) of a folder's entries: MLSD, or NLST and SIZE where a server
        lacks MLSD (a name without a size is taken for a folder)."""
        try:
            return [(name, facts.get("type") == "dir", int(facts["size"]) if "size" in facts else None)
                    for name, facts in ftp.mlsd(folder, ["type", "size"]) if facts.get("type") in ("dir", "file")]
        except ftplib.error_perm as exc:
            if not str(exc).startswith(("500", "501", "502")):
                raise
        out = []
        for path in ftp.nlst(folder):
            name = posixpath.basename(path)
            if name in (".", ".."):
                continue
            try:
                out.append((name, False, ftp.size(posixpath.join(folder, name))))
            except ftplib.error_perm:
                out.append((name, True, None))
        return out

    def listing(self) -> list[FileEntry]:
        ftp, root = self._session(), self._root()
        found: list[FileEntry] = []
        folders = [""]
        try:
            while folders:
                relative = folders.pop()
                for name, is_dir, size in self._entries(ftp, posixpath.join(root, relative)):
                    key = posixpath.join(relative, name)
                    if not is_dir:
                        found.append(FileEntry(key, size))
                    elif self.config["recursive"]:
                        folders.append(key)
        except ftplib.error_perm:
            raise not_found(WHAT) from None
        except (OSError, EOFError, ftplib.Error):
            raise unavailable(WHAT) from None
        return found

    def read(self, name: str) -> bytes:
        ftp, limit = self._session(), max_file_bytes()
        out = io.BytesIO()

        def write(block: bytes) -> None:
            out.write(block)
            if out.tell() > limit:
                raise _TooLarge()

        try:
            ftp.retrbinary(f"RETR {posixpath.join(self._root(), name)}", write)
        except _TooLarge:
            self.close()  # the transfer was cut short: the control connection is in no known state
            raise too_large(name) from None
        except ftplib.error_perm:
            raise FileUnreadable(f"file '{name}' could not be read (gone, or not readable)") from None
        except (OSError, EOFError, ftplib.Error):
            self.close()
            raise FileUnreadable(f"file '{name}' could not be read: the connection failed") from None
        return out.getvalue()
