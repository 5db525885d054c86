"""``samba``: a folder of an SMB share, read with smbprotocol's smbclient; without a user the
session is a guest's.

Each source keeps its own connection cache (closed with it), so two tasks with other credentials
for the same server never share a session, and every call names the port: smbclient's calls
otherwise connect to 445 whatever port the session was registered with."""
from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
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

WHAT = "Samba server"
_ACCESS_DENIED = 0xC0000022


class SambaSchema(SourceSchema):
    host = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9.:\-\[\]]{1,255}$"))
    port = fields.Integer(load_default=445, validate=validate.Range(min=1, max=65535))
    user = fields.String(validate=validate.Length(min=1, max=256), metadata={"description": "none: a guest session"})
    password = fields.String(load_only=True, validate=validate.Length(max=256),
                             metadata={"description": "encrypted at rest; never shown"})
    path = fields.String(required=True, validate=validate.Regexp(r"^[/\\]*[^/\\]+([/\\][^/\\]+)*[/\\]*$"),
                         metadata={"description": "share, then the folder in it: share/dir/subdir"})
    recursive = fields.Boolean(load_default=False)


@contextmanager
def _errors() -> Iterator[None]:
    """smbprotocol's failures of the whole source as the API's."""
    from smbprotocol.exceptions import (
        AccessDenied,
        BadNetworkName,
        LogonFailure,
        ObjectNameNotFound,
        ObjectPathNotFound,
        SMBAuthenticationError,
        SMBException,
        SMBOSError,
    )

    try:
        yield
    except (LogonFailure, AccessDenied, SMBAuthenticationError):
        raise auth_failed(WHAT) from None
    except (BadNetworkName, ObjectNameNotFound, ObjectPathNotFound):
        raise not_found(WHAT, "share or folder") from None
    except SMBOSError as exc:
        if exc.errno == errno.EACCES or exc.ntstatus == _ACCESS_DENIED:
            raise auth_failed(WHAT) from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise not_found(WHAT, "share or folder") from None
        raise unavailable(WHAT) from None
    except (SMBException, OSError, ValueError):
        raise unavailable(WHAT) from None


@register
class SambaSource(Source):
    name = "samba"
    schema = SambaSchema
    secrets = ("password",)

    @classmethod
    def enabled(cls) -> bool:
        try:
            import smbclient  # noqa: F401
        except ImportError:
            return False
        return True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._cache: dict[str, Any] = {}
        self._connected = False
        share, *folders = [p for p in self.config["path"].replace("\\", "/").split("/") if p]
        self._share = f"\\\\{self.config['host']}\\{share}"
        self._root = "\\".join([self._share, *folders])

    def _kwargs(self) -> dict[str, Any]:
        """The arguments of smbclient's calls, once the session and the share are connected."""
        user = self.config.get("user")
        kwargs = {"port": self.config["port"], "connection_cache": self._cache, "require_signing": bool(user)}
        if not self._connected:
            import smbclient
            from smbprotocol.tree import TreeConnect

            with _errors():
                session = smbclient.register_session(
                    self.config["host"], username=user or "guest", password=self.config.get("password") or "",
                    connection_timeout=self.timeout, auth_protocol="ntlm", **kwargs)
                # A guest session has no signing key, so the share's negotiate information cannot be
                # verified, which smbclient's process-wide setting would refuse: the share is
                # connected here, and smbclient's calls find it connected.
                TreeConnect(session, self._share).connect(require_secure_negotiate=bool(user))
            self._connected = True
        return kwargs

    def _path(self, name: str = "") -> str:
        return "\\".join([self._root, *name.split("/")]) if name else self._root

    def check(self) -> None:
        import smbclient

        kwargs = self._kwargs()
        with _errors():
            smbclient.stat(self._root, **kwargs)

    def listing(self) -> list[FileEntry]:
        import smbclient

        kwargs = self._kwargs()
        found: list[FileEntry] = []
        folders = [""]
        with _errors():
            while folders:
                relative = folders.pop()
                for entry in smbclient.scandir(self._path(relative), **kwargs):
                    key = f"{relative}/{entry.name}" if relative else entry.name
                    if not entry.is_dir():
                        found.append(FileEntry(key, entry.smb_info.end_of_file))
                    elif self.config["recursive"]:
                        folders.append(key)
        return found

    def read(self, name: str) -> bytes:
        import smbclient
        from smbprotocol.exceptions import SMBException

        kwargs, limit = self._kwargs(), max_file_bytes()
        try:
            with smbclient.open_file(self._path(name), mode="rb", **kwargs) as f:
                data = f.read(limit + 1)
        except (SMBException, OSError, ValueError):
            raise FileUnreadable(f"file '{name}' could not be read (gone, or not readable)") from None
        if len(data) > limit:
            raise too_large(name)
        return data

    def close(self) -> None:
        if self._cache:
            import smbclient

            smbclient.reset_connection_cache(fail_on_error=False, connection_cache=self._cache)
