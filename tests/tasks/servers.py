"""Real servers on loopback for the estimator's image sources: FTP (pyftpdlib in a thread) and
Samba (Debian's smbd on a free port, with a share for a user and a share for guests). S3 is the
moto server of ``tests/storage/conftest.py``.

smbd needs the ``samba`` package (``scripts/services.sh`` installs it) and root (it switches to
the share user to read files); the Samba tests are skipped where either is missing."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _free_port

FTP_USER, FTP_PASSWORD = "estimator", "ftp secret"
# an existing system account stands for the share's user: smbpasswd only adds users the system has
SMB_USER, SMB_PASSWORD = "daemon", "smb secret"


@dataclass
class Server:
    host: str
    port: int
    root: Path  # FTP: the user's home; Samba: the folder holding one folder per share
    authorizer: Any = None  # FTP: pyftpdlib's, whose override_perm closes folders to the user


@pytest.fixture(scope="session")
def ftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    root = tmp_path_factory.mktemp("ftp")
    authorizer = DummyAuthorizer()
    authorizer.add_user(FTP_USER, FTP_PASSWORD, str(root), perm="elr")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "passive_ports": None})
    server = ThreadedFTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2}, daemon=True)
    thread.start()
    yield Server("127.0.0.1", server.address[1], root, authorizer)
    server.close_all()
    thread.join(5)


_SMB_CONF = """[global]
    server role = standalone server
    map to guest = Bad User
    guest account = nobody
    smb ports = {port}
    interfaces = 127.0.0.1
    bind interfaces only = yes
    disable netbios = yes
    server min protocol = SMB2
    load printers = no
    printcap name = /dev/null
    disable spoolss = yes
    passdb backend = tdbsam:{state}/passdb.tdb
    private dir = {state}
    lock directory = {state}
    state directory = {state}
    cache directory = {state}
    pid directory = {state}
    ncalrpc dir = {state}/ncalrpc
    log file = {state}/log.%m
[private]
    path = {shares}/private
    read only = yes
    valid users = {user}
[public]
    path = {shares}/public
    read only = yes
    guest ok = yes
"""


@pytest.fixture(scope="session")
def smb_server() -> Iterator[Server]:
    smbd, smbpasswd = shutil.which("smbd", path="/usr/sbin:/usr/bin"), shutil.which("smbpasswd")
    if smbd is None or smbpasswd is None or os.geteuid() != 0:
        pytest.skip("smbd and smbpasswd (Debian's samba package) and root are needed for the Samba tests")
    # not below pytest's temporary folder: smbd reads as the share's user, who may not enter it
    base = Path(tempfile.mkdtemp(prefix="facegate-smb-"))
    base.chmod(0o755)
    state, shares = base / "state", base / "shares"
    for folder in (state, shares / "private", shares / "public"):
        folder.mkdir(parents=True)
        folder.chmod(0o755)
    port = _free_port()
    conf = base / "smb.conf"
    conf.write_text(_SMB_CONF.format(port=port, state=state, shares=shares, user=SMB_USER))
    subprocess.run([smbpasswd, "-c", str(conf), "-a", "-s", SMB_USER], input=f"{SMB_PASSWORD}\n{SMB_PASSWORD}\n",
                   text=True, check=True, capture_output=True)
    # a session of its own: smbd signals its whole process group when it stops
    process = subprocess.Popen([smbd, "--foreground", "--no-process-group", "-s", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"smbd did not start; its log is in {state}")
                time.sleep(0.2)
        yield Server("127.0.0.1", port, shares)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(base, ignore_errors=True)
