"""``network_disk``: a folder the workers see (a network share mounted into their containers).

Only folders below the ``estimator_disk_roots`` setting may be read, the targets of followed links
included: a task body must not make a worker read its own configuration or keys."""
from __future__ import annotations

import os

from marshmallow import fields, validate

from app import settings
from app.tasks.sources import (
    FileEntry,
    FileUnreadable,
    Source,
    SourceSchema,
    max_file_bytes,
    not_found,
    register,
    too_large,
)


class DiskSchema(SourceSchema):
    path = fields.String(required=True, validate=[validate.Length(min=1, max=4096),
                                                  validate.Regexp(r"^/", error="an absolute path")],
                         metadata={"description": "absolute path of the folder on the workers, below a folder "
                                                  "of the estimator_disk_roots setting"})
    recursive = fields.Boolean(load_default=False)
    follow_links = fields.Boolean(load_default=False)


def _roots() -> list[str]:
    return [os.path.realpath(r.strip()) for r in settings.current().estimator_disk_roots.split(",") if r.strip()]


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


@register
class DiskSource(Source):
    name = "network_disk"
    schema = DiskSchema

    @classmethod
    def enabled(cls) -> bool:
        return bool(_roots())

    def _folder(self) -> str:
        folder = os.path.realpath(self.config["path"])
        if not _inside(folder, _roots()) or not os.path.isdir(folder):
            # one answer for both: which folders exist outside the roots is none of the caller's business
            raise not_found("network disk")
        return folder

    def check(self) -> None:
        self._folder()

    def listing(self) -> list[FileEntry]:
        folder, roots = self._folder(), _roots()
        follow = self.config["follow_links"]
        found = []
        for top, dirs, names in os.walk(folder, followlinks=follow):
            if not self.config["recursive"]:
                dirs.clear()
            elif not follow:
                dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(top, d))]
            for name in names:
                path = os.path.join(top, name)
                if os.path.islink(path) and (not follow or not _inside(os.path.realpath(path), roots)):
                    continue
                try:
                    size = os.stat(path).st_size
                except OSError:
                    size = None  # listed all the same: its part reports it unreadable
                found.append(FileEntry(os.path.relpath(path, folder).replace(os.sep, "/"), size))
        return found

    def read(self, name: str) -> bytes:
        folder = self._folder()
        path = os.path.realpath(os.path.join(folder, name))
        if not _inside(path, [folder] if not self.config["follow_links"] else _roots()):
            raise FileUnreadable(f"file '{name}' is outside the folder")
        try:
            with open(path, "rb") as f:
                data = f.read(max_file_bytes() + 1)
        except OSError:
            raise FileUnreadable(f"file '{name}' could not be read (gone, or not readable)") from None
        if len(data) > max_file_bytes():
            raise too_large(name)
        return data
