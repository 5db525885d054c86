"""The estimator task end to end: each image source on real servers (a folder, moto's S3, pyftpdlib,
Debian's smbd, archives in the image store), the real worker and models on the shared photos."""
from __future__ import annotations

import io
import shutil
import subprocess
import threading
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.errors import APIError
from app.events.models import Event
from app.tasks import registry, runner
from app.tasks.models import Subtask, Task
from app.tasks.sources.ftp import FtpSchema, FtpSource
from app.tasks.types import estimator
from tasks import inference
from tests.conftest import SHARED, Account
from tests.storage.conftest import S3_KEYS, moto_endpoint  # noqa: F401 - a fixture
from tests.tasks.servers import FTP_PASSWORD, FTP_USER, SMB_PASSWORD, SMB_USER, Server, ftp_server, smb_server  # noqa: F401
from tests.tasks.test_framework import wait_status

LFW = SHARED / "faces" / "lfw"
PHOTOS = [LFW / "Ariel_Sharon" / "Ariel_Sharon_0001.jpg", LFW / "Colin_Powell" / "Colin_Powell_0001.jpg",
          LFW / "Tony_Blair" / "Tony_Blair_0001.jpg"]
NOT_IMAGE = ("notes.jpg", b"these are not pixels")
# policies that make an event with a stored face per photo
POLICIES = {"extract_policy": {"extract_face_descriptor": True}, "detect_policy": {"multiface_policy": "largest"},
            "storage_policy": {"face_policy": {"store_face": True}}}
DONE, FAILED = 5, 3
BAD_IMAGE, FILE_UNREADABLE = 23011, 70014


def _create(client: Any, account: Account, source: dict[str, Any], **content: Any) -> Any:
    body = {"content": {"handler": {"policies": POLICIES}, "source": source, **content}, "description": "estimate"}
    return client.post("/tasks/estimator", json=body, headers=account.auth)


def _run(client: Any, account: Account, source: dict[str, Any], **content: Any) -> dict[str, Any]:
    r = _create(client, account, source, **content)
    assert r.status_code == 201, r.json
    task = wait_status(client, account.auth, r.json["task_id"], (DONE, FAILED), timeout=180)
    assert task["status"] == DONE, client.get(f"/tasks/{task['task_id']}/errors", headers=account.auth).json
    return task


def _result(client: Any, account: Account, task_id: int) -> dict[str, Any]:
    r = client.get(f"/tasks/{task_id}/result", headers=account.auth)
    assert r.status_code == 200, r.json
    return r.json


def _events_of(task_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Event).where(
            Event.handler_id == uuid.uuid5(estimator._NAMESPACE, f"handler-{task_id}")))


def _check_photos(answer: dict[str, Any], names: list[str], errors: dict[str, int]) -> None:
    """One entry per file in name order: photos with an event holding a stored face, the others
    with their error, also listed among the task's errors."""
    entries = {e["filename"]: e for e in answer["result"]}
    assert sorted(entries) == sorted([*names, *errors]) and len(answer["result"]) == len(entries)
    for name in names:
        entry = entries[name]
        assert entry["status"] == "success", entry
        (event,) = entry["events"]
        assert event["filename"] == name and event["face_id"]
        assert [d["type"] for d in event["detections"]] == ["face"]
    for name, code in errors.items():
        assert entries[name]["status"] == "error" and entries[name]["error"]["error_code"] == code, entries[name]
    assert sorted((e["additional_info"], e["error_code"]) for e in answer["errors"]) == sorted(errors.items())


def _part_again(task_id: int) -> list[dict[str, Any]]:
    """The first part of a task run again, as a redelivered message (its worker died before the
    checkpoint) would run it."""
    with session_scope() as session:
        row = session.get(Task, task_id)
        subtask = session.scalar(select(Subtask).where(Subtask.task_id == task_id, Subtask.part == 0))
        job = runner.job_of(row, subtask, analyzer=inference)
    return estimator.part(job, subtask.content)


def _failed_with(client: Any, account: Account, r: Any, code: int) -> None:
    """A task the split refused: failed, with one error of ``code``."""
    assert r.status_code == 201, r.json
    task = wait_status(client, account.auth, r.json["task_id"], (DONE, FAILED), timeout=60)
    assert task["status"] == FAILED
    errors = client.get(f"/tasks/{task['task_id']}/errors", headers=account.auth).json["errors"]
    assert [e["error_code"] for e in errors] == [code], errors


# ---- network disk ------------------------------------------------------------------------------
def test_network_disk_processes_each_file_once(client: Any, account: Account, celery_worker: Any, tmp_path: Path,
                                               settings_override: Callable[..., None]) -> None:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(PHOTOS[0], folder / "a.jpg")
    shutil.copy(PHOTOS[1], folder / "sub" / "b.jpg")
    shutil.copy(PHOTOS[2], folder / "skipped.png")  # the postfix filter leaves it out
    (folder / NOT_IMAGE[0]).write_bytes(NOT_IMAGE[1])
    (folder / "gone.jpg").symlink_to(folder / "deleted.jpg")  # listed, gone when read
    (tmp_path / "outside.jpg").write_bytes(PHOTOS[2].read_bytes())
    (folder / "escape.jpg").symlink_to(tmp_path / "outside.jpg")  # outside the roots: never listed
    source = {"type": "network_disk", "path": str(folder), "recursive": True, "follow_links": True, "postfix": ".jpg"}

    assert _create(client, account, source).json["error_code"] == 70004  # no roots set: the source is off
    settings_override(estimator_disk_roots=str(folder))
    r = _create(client, account, {**source, "path": str(tmp_path)})
    assert r.status_code == 400 and r.json["error_code"] == 70011 and str(tmp_path) not in r.json["detail"]

    task = _run(client, account, source)
    answer = _result(client, account, task["task_id"])
    _check_photos(answer, ["a.jpg", "sub/b.jpg"], {"gone.jpg": FILE_UNREADABLE, NOT_IMAGE[0]: BAD_IMAGE})
    assert _events_of(task["task_id"]) == 2

    # a part delivered again writes the same events again, no second copy
    again = _part_again(task["task_id"])
    assert [e["events"][0]["event_id"] for e in again if e["status"] == "success"] == \
        [e["events"][0]["event_id"] for e in answer["result"] if e["status"] == "success"]
    assert _events_of(task["task_id"]) == 2


def test_face_samples(client: Any, account: Account, celery_worker: Any, tmp_path: Path,
                      settings_override: Callable[..., None]) -> None:
    """image_type 1: each file is one aligned face (a sample the platform stored), not detected again."""
    r = client.post("/sdk", data={"image": (io.BytesIO(PHOTOS[0].read_bytes()), "a.jpg")}, headers=account.auth,
                    content_type="multipart/form-data")
    assert r.status_code == 200, r.json
    sample_id = r.json["images"][0]["faces"][0]["sample_id"]
    sample = client.get(f"/samples/faces/{sample_id}", headers=account.auth).data
    (tmp_path / "face.jpg").write_bytes(sample)
    settings_override(estimator_disk_roots=str(tmp_path))
    task = _run(client, account, {"type": "network_disk", "path": str(tmp_path)}, image_type=1)
    _check_photos(_result(client, account, task["task_id"]), ["face.jpg"], {})


# ---- S3 ------------------------------------------------------------------------------------------
def test_s3_bucket(client: Any, account: Account, celery_worker: Any, moto_endpoint: str) -> None:  # noqa: F811
    bucket = f"estimator-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id=S3_KEYS["access_key"], aws_secret_access_key=S3_KEYS["secret_key"])
    s3.create_bucket(Bucket=bucket)
    for key, data in (("2022/January/a.jpg", PHOTOS[0].read_bytes()), ("2022/January/b.jpg", PHOTOS[1].read_bytes()),
                      ("2022/January/deeper/c.jpg", PHOTOS[2].read_bytes()),  # not recursive: left out
                      ("2022/February/d.jpg", PHOTOS[2].read_bytes()), ("2022/January/" + NOT_IMAGE[0], NOT_IMAGE[1])):
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    source = {"type": "s3", "bucket_name": bucket, "endpoint": moto_endpoint, "prefix": "2022/January/",
              "authorization": {"s3_key": S3_KEYS["access_key"], "s3_secret_key": S3_KEYS["secret_key"]},
              "save_origin": True}

    r = _create(client, account, {**source, "bucket_name": bucket + "-missing"})
    assert r.status_code == 400 and r.json["error_code"] == 70011 and moto_endpoint not in r.json["detail"]

    task = _run(client, account, source)
    answer = _result(client, account, task["task_id"])
    _check_photos(answer, ["2022/January/a.jpg", "2022/January/b.jpg"], {"2022/January/" + NOT_IMAGE[0]: BAD_IMAGE})
    origin = answer["result"][0]["events"][0]["image_origin_id"]  # save_origin: the photo kept as the origin
    assert origin and client.get(f"/images/{origin}", headers=account.auth).status_code == 200
    shown = client.get(f"/tasks/{task['task_id']}", headers=account.auth).json
    assert S3_KEYS["secret_key"] not in str(shown) and S3_KEYS["access_key"] not in str(shown)

    s3.delete_object(Bucket=bucket, Key="2022/January/b.jpg")  # gone between the split and a part
    again = {e["filename"]: e for e in _part_again(task["task_id"])}
    assert again["2022/January/b.jpg"]["status"] == "error"
    assert again["2022/January/b.jpg"]["error"]["error_code"] == FILE_UNREADABLE
    assert again["2022/January/a.jpg"]["status"] == "success"


# ---- FTP -----------------------------------------------------------------------------------------
def test_ftp_folder(client: Any, account: Account, celery_worker: Any, ftp_server: Server) -> None:  # noqa: F811
    folder = ftp_server.root / f"photos-{uuid.uuid4().hex[:8]}"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(PHOTOS[0], folder / "a.jpg")
    shutil.copy(PHOTOS[1], folder / "sub" / "b.jpg")
    (folder / NOT_IMAGE[0]).write_bytes(NOT_IMAGE[1])
    (folder / "locked").mkdir()
    (folder / "locked" / "c.jpg").write_bytes(PHOTOS[2].read_bytes())
    ftp_server.authorizer.override_perm(FTP_USER, str(folder / "locked"), "el")  # listed, never sent
    source = {"type": "ftp", "host": ftp_server.host, "port": ftp_server.port, "user": FTP_USER,
              "password": FTP_PASSWORD, "path": folder.name, "recursive": True}

    r = _create(client, account, {**source, "password": "wrong"})
    assert r.status_code == 400 and r.json["error_code"] == 70010 and ftp_server.host not in r.json["detail"]
    r = _create(client, account, {**source, "path": "no-such-folder"})
    assert r.status_code == 400 and r.json["error_code"] == 70011
    r = _create(client, account, {**source, "port": _closed_port()})
    assert r.status_code == 400 and r.json["error_code"] == 70009

    task = _run(client, account, source)
    _check_photos(_result(client, account, task["task_id"]), ["a.jpg", "sub/b.jpg"],
                  {NOT_IMAGE[0]: BAD_IMAGE, "locked/c.jpg": FILE_UNREADABLE})
    shown = client.get(f"/tasks/{task['task_id']}", headers=account.auth).json
    assert FTP_PASSWORD not in str(shown)


def test_ftp_max_sessions(app: Any, ftp_server: Server, settings_override: Callable[..., None]) -> None:  # noqa: F811
    """Sessions beyond max_sessions wait for a free one (a request no longer than the source timeout)."""
    settings_override(estimator_source_timeout_s=1.0)
    config = FtpSchema().load({"type": "ftp", "host": ftp_server.host, "port": ftp_server.port, "user": FTP_USER,
                               "password": FTP_PASSWORD, "max_sessions": 1})
    with FtpSource(config, None) as first:
        first.listing()
        with pytest.raises(APIError) as refused:
            FtpSource(config, None).check()
        assert refused.value.kind == "source_unavailable" and "max_sessions" in refused.value.detail
        with FtpSource({**config, "max_sessions": 2}, None) as second:
            second.check()
    with FtpSource(config, None) as again:  # the first gave its session back
        again.check()


def _closed_port() -> int:
    from tests.conftest import _free_port

    return _free_port()


# ---- Samba ---------------------------------------------------------------------------------------
def test_samba_share(client: Any, account: Account, celery_worker: Any, smb_server: Server) -> None:  # noqa: F811
    private, public = smb_server.root / "private", smb_server.root / "public"
    folder = private / f"photos-{uuid.uuid4().hex[:8]}"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(PHOTOS[0], folder / "a.jpg")
    shutil.copy(PHOTOS[1], folder / "sub" / "b.jpg")
    (folder / NOT_IMAGE[0]).write_bytes(NOT_IMAGE[1])
    shutil.copy(PHOTOS[2], folder / "locked.jpg")
    (folder / "locked.jpg").chmod(0)  # smbd reads as the share's user, who may not
    for path in (folder, folder / "sub", *folder.rglob("*.jpg")):
        if path.name != "locked.jpg":
            path.chmod(0o755 if path.is_dir() else 0o644)
    source = {"type": "samba", "host": smb_server.host, "port": smb_server.port, "user": SMB_USER,
              "password": SMB_PASSWORD, "path": f"private/{folder.name}", "recursive": True}

    r = _create(client, account, {**source, "password": "wrong"})
    assert r.status_code == 400 and r.json["error_code"] == 70010 and smb_server.host not in r.json["detail"]
    r = _create(client, account, {**source, "path": "private/no-such-folder"})
    assert r.status_code == 400 and r.json["error_code"] == 70011

    task = _run(client, account, source)
    _check_photos(_result(client, account, task["task_id"]), ["a.jpg", "sub/b.jpg"],
                  {NOT_IMAGE[0]: BAD_IMAGE, "locked.jpg": FILE_UNREADABLE})

    shutil.copy(PHOTOS[2], public / "c.jpg")
    (public / "c.jpg").chmod(0o644)
    task = _run(client, account, {"type": "samba", "host": smb_server.host, "port": smb_server.port,
                                  "path": "public"})  # no user: a guest
    _check_photos(_result(client, account, task["task_id"]), ["c.jpg"], {})


# ---- ZIP archives --------------------------------------------------------------------------------
def _archive(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return out.getvalue()


def _stored(client: Any, account: Account, data: bytes) -> str:
    r = client.post("/objects", data=data, headers={**account.auth, "Content-Type": "application/zip"})
    assert r.status_code == 201, r.json
    return r.json["object_id"]


def test_zip_archive(client: Any, account: Account, celery_worker: Any) -> None:
    damaged = PHOTOS[2].read_bytes()
    data = bytearray(_archive({"a.jpg": PHOTOS[0].read_bytes(), "dir/b.jpg": PHOTOS[1].read_bytes(),
                               NOT_IMAGE[0]: NOT_IMAGE[1], "damaged.jpg": damaged}, zipfile.ZIP_STORED))
    middle = bytes(data).index(damaged) + len(damaged) // 2
    data[middle] ^= 0xFF  # its CRC no longer holds
    task = _run(client, account, {"type": "zip", "object_id": _stored(client, account, bytes(data))})
    _check_photos(_result(client, account, task["task_id"]), ["a.jpg", "dir/b.jpg"],
                  {NOT_IMAGE[0]: BAD_IMAGE, "damaged.jpg": FILE_UNREADABLE})
    with pytest.raises(Exception):  # the parts' copies of the archive went with the merge
        runner.Job(task["task_id"], uuid.UUID(account.account_id), registry.get("estimator"), {}).get_blob("part-0")


@pytest.mark.skipif(shutil.which("zip") is None, reason="the zip command makes the encrypted archive")
def test_zip_with_password(client: Any, account: Account, celery_worker: Any, tmp_path: Path) -> None:
    shutil.copy(PHOTOS[0], tmp_path / "a.jpg")
    subprocess.run(["zip", "-q", "-P", "open sesame", "secret.zip", "a.jpg"], cwd=tmp_path, check=True)
    object_id = _stored(client, account, (tmp_path / "secret.zip").read_bytes())
    source = {"type": "zip", "object_id": object_id}
    _failed_with(client, account, _create(client, account, {**source, "password": "wrong"}), 70010)
    _failed_with(client, account, _create(client, account, source), 70010)
    task = _run(client, account, {**source, "password": "open sesame"})
    _check_photos(_result(client, account, task["task_id"]), ["a.jpg"], {})


def test_bad_archives(client: Any, account: Account, celery_worker: Any,
                      settings_override: Callable[..., None]) -> None:
    _failed_with(client, account, _create(client, account, {"type": "zip", "object_id": _stored(
        client, account, PHOTOS[0].read_bytes())}), 70012)
    # a bomb: 20 MiB of zeros packed into some kilobytes
    bomb = _stored(client, account, _archive({"a.jpg": PHOTOS[0].read_bytes(), "zeros.jpg": bytes(20 * 2**20)}))
    assert len(client.get(f"/objects/{bomb}", headers=account.auth).data) < 2**20
    _failed_with(client, account, _create(client, account, {"type": "zip", "object_id": bomb}), 70013)
    # entries declaring more than the limit in all, each harmless
    plain = _stored(client, account, _archive({f"{n}.jpg": PHOTOS[n].read_bytes() for n in range(3)},
                                              zipfile.ZIP_STORED))
    settings_override(archive_max_size_mb=0.02)
    r = _create(client, account, {"type": "zip", "object_id": plain})  # the archive itself is too large already
    assert r.status_code == 400 and r.json["error_code"] == 70013


class _Archives(BaseHTTPRequestHandler):
    served: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        data = self.served.get(self.path)
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *_: Any) -> None:
        pass


def test_zip_at_a_url(client: Any, account: Account, celery_worker: Any,
                      settings_override: Callable[..., None]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Archives)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    _Archives.served["/photos.zip"] = _archive({"a.jpg": PHOTOS[0].read_bytes()})
    try:
        settings_override(sdk_url_fetch=False)
        r = _create(client, account, {"type": "zip", "url": f"{base}/photos.zip"})
        assert r.status_code == 403 and r.json["error_code"] == 30005
        settings_override(sdk_url_fetch=True)
        task = _run(client, account, {"type": "zip", "url": f"{base}/photos.zip"})
        _check_photos(_result(client, account, task["task_id"]), ["a.jpg"], {})
        _failed_with(client, account, _create(client, account, {"type": "zip", "url": f"{base}/missing.zip"}), 70011)
    finally:
        server.shutdown()


def test_zip_cannot_be_scheduled() -> None:
    task_type = registry.get("estimator")
    assert "ZIP" in task_type.unschedulable({"source": {"type": "zip", "object_id": str(uuid.uuid4())}})
    assert task_type.unschedulable({"source": {"type": "ftp", "host": "h", "user": "u", "password": "p"}}) is None


# ---- bodies -------------------------------------------------------------------------------------
def test_bad_bodies(client: Any, account: Account, tmp_path: Path, settings_override: Callable[..., None]) -> None:
    settings_override(estimator_disk_roots=str(tmp_path))
    disk = {"type": "network_disk", "path": str(tmp_path)}
    for content in ({"handler": {}, "source": disk}, {"handler": {"policies": POLICIES}},
                    {"handler": {"policies": POLICIES}, "source": {"type": "dropbox"}},
                    {"handler": {"policies": POLICIES}, "source": {**disk, "path": "relative/dir"}},
                    {"handler": {"policies": POLICIES}, "source": {"type": "zip"}},
                    {"handler": {"policies": POLICIES}, "source": disk, "image_type": 2}):
        r = client.post("/tasks/estimator", json={"content": content}, headers=account.auth)
        assert r.status_code == 400 and r.json["error_code"] == 10005, (content, r.json)
    r = client.post("/tasks/estimator", json={"content": {"handler": {"handler_id": str(uuid.uuid4())},
                                                          "source": disk}}, headers=account.auth)
    assert r.status_code == 404, r.json
    dynamic = client.post("/handlers", json={"handler_type": "dynamic"}, headers=account.auth).json["handler_id"]
    r = client.post("/tasks/estimator", json={"content": {"handler": {"handler_id": dynamic}, "source": disk}},
                    headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 50002, r.json  # a dynamic handler needs policies
