"""``ftp``: a folder of an FTP server, read with ftplib (one session per split or part).

``max_sessions`` bounds the sessions the platform holds on the server for that user at once, all
tasks and workers together: a session takes a slot of a Redis sorted set first (a lease that a
dead worker's slot outlives by SLOT_LEASE_S at most) and waits up to SLOT_WAIT_S for one."""
from __future__ import annotations

import ftplib
import hashlib
import io
import posixpath
import time
import uuid
from typing import Any

from marshmallow import fields, validate

from app.db import redis_client
from app.errors import APIError
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
SLOT_LEASE_S = 3600
SLOT_WAIT_S = 600.0
# Drop the expired leases, then take a slot if fewer than the most are held.
_TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


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
        server = f"{self.config['host']}:{self.config['port']}:{self.config['user']}"
        self._slots = f"facegate:ftp-sessions:{hashlib.sha256(server.encode()).hexdigest()[:32]}"
        self._slot: str | None = None
        self._slot_wait = SLOT_WAIT_S

    def _take_slot(self) -> None:
        slot, deadline = uuid.uuid4().hex, time.monotonic() + self._slot_wait
        while True:
            now = time.time()
            if redis_client().eval(_TAKE_SLOT, 1, self._slots, now, self.config["max_sessions"], now + SLOT_LEASE_S,
                                   slot, SLOT_LEASE_S):
                self._slot = slot
                return
            if time.monotonic() > deadline:
                raise APIError("source_unavailable", f"the FTP server's {self.config['max_sessions']} sessions "
                                                     "(max_sessions) stayed taken")
            time.sleep(0.2)

    def _give_slot(self) -> None:
        if self._slot is not None:
            redis_client().zrem(self._slots, self._slot)
            self._slot = None

    def _session(self) -> ftplib.FTP:
        if self._ftp is None:
            self._take_slot()
            try:
                self._ftp = self._connected()
            except APIError:
                self._give_slot()
                raise
        return self._ftp

    def _connected(self) -> ftplib.FTP:
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
        return ftp

    def check(self) -> None:
        self._slot_wait = self.timeout  # a request waits for a free session no longer than for the server
        ftp = self._session()
        try:
            ftp.cwd(self._root())
        except ftplib.error_perm:
            raise not_found(WHAT) from None
        except (OSError, EOFError, ftplib.Error):
            raise unavailable(WHAT) from None

    def close(self) -> None:
        if self._ftp is not None:
            try:
                self._ftp.quit()
            except (OSError, EOFError, ftplib.Error):
                self._ftp.close()
            self._ftp = None
        self._give_slot()

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
