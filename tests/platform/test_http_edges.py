"""The real server (``facegate api``: gunicorn with app.server.Worker) over raw sockets: what
gunicorn refuses answers in the error shape, silent, trickling and endless bodies are cut off with
408 and free their thread, bodies past max_request_mb get 413 without being read to the end."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.errors import ERRORS
from app.server import LIMIT_REQUEST_LINE, THREADS
from tests.platform.helpers import ROOT, free_port, wait_until

pytestmark = pytest.mark.xdist_group("platform-http-edges")

FACEGATE = str(Path(sys.executable).parent / "facegate")
PAUSE_S = 2.0  # request_body_timeout_s of the server under test
MAX_MB = 1


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the first byte sent to the end of the answer
    closed: bool  # the server closed the connection after answering

    def error(self) -> dict[str, object]:
        assert self.headers.get("content-type") == "application/json", (self.status, self.headers, self.body[:200])
        shape = json.loads(self.body)
        assert set(shape) == {"error_code", "desc", "detail"}, shape
        assert self.headers.get("luna-request-id"), self.headers
        return shape


class Server:
    def __init__(self, port: int, log_path: Path) -> None:
        self.port, self.log_path = port, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def exchange(self, data: bytes, then: Callable[[socket.socket], None] | None = None,
                 timeout: float = 15) -> Answer:
        """Send ``data`` (and whatever ``then`` sends, in a thread), read the answer to its end."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        started = time.monotonic()
        sender = None
        try:
            sock.sendall(data)
            if then is not None:
                sender = threading.Thread(target=then, args=(sock,), daemon=True)
                sender.start()
            return self._read(sock, started, timeout)
        finally:
            sock.close()
            if sender is not None:
                sender.join(5)

    @staticmethod
    def _read(sock: socket.socket, started: float, timeout: float) -> Answer:
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer after {time.monotonic() - started:.1f} s: {raw!r}"
            raw += chunk
        head, body = raw.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "answer cut short"
            body += chunk
        seconds = time.monotonic() - started
        sock.settimeout(5)
        try:
            closed = sock.recv(65536) == b""
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
        return Answer(int(status_line.split()[1]), headers, body[:length], seconds, closed)

    def answers_at_once(self) -> float:
        answer = self.exchange(b"GET /version HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", timeout=10)
        assert answer.status == 200, answer
        return answer.seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("http-edges")
    port = free_port()
    env = {**os.environ, "FACEGATE_DATA_DIR": str(tmp / "data"), "FACEGATE_DATABASE_URL": "",
           "FACEGATE_API_WORKERS": "1", "FACEGATE_REQUEST_BODY_TIMEOUT_S": str(PAUSE_S),
           "FACEGATE_MAX_REQUEST_MB": str(MAX_MB), "PYTHONUNBUFFERED": "1"}
    subprocess.run([FACEGATE, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    log_path = tmp / "api.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen([FACEGATE, "api", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=ROOT,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    s = Server(port, log_path)
    try:
        def up() -> bool:
            assert popen.poll() is None, s.log()
            try:
                return s.answers_at_once() < 10
            except (OSError, AssertionError):
                return False

        wait_until(up, 120, 0.5, "facegate api to answer")
        yield s
        assert "Traceback" not in s.log(), s.log()[-5000:]
    finally:
        os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(10)


def _refused(answer: Answer, kind: str) -> dict[str, object]:
    shape = answer.error()
    error = ERRORS[kind]
    assert (answer.status, shape["error_code"]) == (error.status, error.code), (answer, shape)
    if kind == "body_timeout":
        assert answer.headers["connection"] == "close" and answer.closed, answer
    return shape


def _post(path: str, *headers: str, body: bytes = b"", length: int | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: t", "Content-Type: application/json", *headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _chunked(path: str) -> bytes:
    return _post(path, "Transfer-Encoding: chunked")


LONG_LINES = [b"GET /faces?external_id=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
              b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
              b"POST /lists?" + b"q=1&" * 2000 + b" HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
              b"GET /version?" + b"%ED%A0%80" * (LIMIT_REQUEST_LINE // 9 + 1) + b" HTTP/1.1\r\nHost: t\r\n\r\n"]
BIG_HEADERS = [b"GET /faces HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n",
               b"GET /version HTTP/1.1\r\nHost: t\r\nLuna-Request-Id: " + b"1" * 60_000 + b"\r\n\r\n",
               b"GET /version HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n",
               b"POST /accounts HTTP/1.1\r\nHost: t\r\n" + b"X-Pad: " + b"b" * 9000 + b"\r\n\r\n"]
MALFORMED = [b"GARBAGE\r\n\r\n",
             b"GET /version HTTP/9.9\r\nHost: t\r\n\r\n",
             b"G@T /version HTTP/1.1\r\nHost: t\r\n\r\n",
             b"GET /version HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n",
             b"GET /faces/\xed\xa0\x80 HTTP/1.1\r\nHost: t\r\n\r\n",
             b"POST /accounts HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
             b"POST /accounts HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
             b"GET /version HTTP/1.1\r\nHost: t\r\nLuna-Request-Id: \xed\xa0\x80\r\n\r\n"]


def test_a_long_request_line_is_414_in_the_error_shape(server):
    for request in LONG_LINES:
        shape = _refused(server.exchange(request), "uri_too_long")
        assert str(LIMIT_REQUEST_LINE) in str(shape["detail"])


def test_large_headers_are_431_in_the_error_shape(server):
    for request in BIG_HEADERS:
        _refused(server.exchange(request), "headers_too_large")


def test_malformed_http_is_4xx_in_the_error_shape(server):
    for request in MALFORMED:
        answer = server.exchange(request)
        assert 400 <= answer.status < 500, (request[:60], answer)
        answer.error()


def test_malformed_chunks_reach_the_app_as_400(server):
    for chunks in (b"ZZ\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"2;bad ext\x01\r\n{}\r\n0\r\n\r\n"):
        answer = server.exchange(_chunked("/accounts") + chunks)
        assert answer.status == 400 and answer.closed, answer
        answer.error()


def test_json_past_the_parser_limits_over_the_wire(server):
    for body in (b'{"a": ' + b"1" * 5000 + b"}", b"[" * 10_000 + b"]" * 10_000, b'{"login": "\\ud800"}',
                 b'{"a": NaN}'):
        _refused(server.exchange(_post("/accounts", "Connection: close", body=body, length=len(body))), "bad_json")


def test_an_endless_chunk_then_silence_is_cut_off_and_frees_the_thread(server):
    answer = server.exchange(_chunked("/accounts") + b"FFFFFFFFFFFF\r\n{\"login\": ")
    shape = _refused(answer, "body_timeout")
    assert PAUSE_S - 0.2 < answer.seconds < PAUSE_S + 3, answer.seconds
    assert answer.closed
    assert "no request data" in str(shape["detail"])
    assert server.answers_at_once() < 1


def test_more_silent_clients_than_threads_are_all_cut_off(server):
    clients = []
    started = time.monotonic()
    for _ in range(THREADS + 4):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        sock.sendall(_chunked("/accounts") + b"FFFFFFFFFFFF\r\n{")
        clients.append(sock)
    try:
        for sock in clients:
            answer = Server._read(sock, started, 20)
            _refused(answer, "body_timeout")
        # the later ones waited for a thread, then for their own timeout: two rounds at most
        assert time.monotonic() - started < 2 * PAUSE_S + 4
    finally:
        for sock in clients:
            sock.close()
    assert server.answers_at_once() < 1


def _trickle(step_s: float, payload: bytes) -> Callable[[socket.socket], None]:
    def send(sock: socket.socket) -> None:
        for byte in payload:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(step_s)

    return send


def test_a_slow_loris_body_is_cut_off(server):
    """A byte every 0.3 s never pauses as long as the timeout, and is still cut off: after its
    first request_body_timeout_s a request must average 1 KiB/s."""
    answer = server.exchange(_post("/accounts", length=1000), then=_trickle(0.3, b"x" * 1000))
    shape = _refused(answer, "body_timeout")
    assert "slower than" in str(shape["detail"])
    assert answer.seconds < PAUSE_S + 3 and answer.closed, answer
    assert server.answers_at_once() < 1


def test_slow_loris_headers_are_cut_off(server):
    answer = server.exchange(b"GET /version HTTP/1.1\r\n", then=_trickle(0.3, b"X-Slow: " + b"y" * 200))
    _refused(answer, "body_timeout")
    assert answer.seconds < PAUSE_S + 3 and answer.closed, answer


def test_a_pause_mid_body_is_cut_off(server):
    body = b'{"login": "pause@example.com", "password": "a long password"}'
    answer = server.exchange(_post("/accounts", length=len(body), body=body[:20]))
    _refused(answer, "body_timeout")
    assert PAUSE_S - 0.2 < answer.seconds < PAUSE_S + 3 and answer.closed


def test_bodies_past_max_request_mb_are_413_without_being_read_to_the_end(server):
    declared = _post("/accounts", length=10**12)  # nothing follows: the header alone decides
    answer = server.exchange(declared)
    _refused(answer, "too_large")
    assert answer.seconds < 2

    sent = [0]
    limit = 64 * MAX_MB * 2**20

    def endless(sock: socket.socket) -> None:
        piece = b"a" * 2**16
        while sent[0] < limit:
            try:
                sock.sendall(piece)
            except OSError:
                return
            sent[0] += len(piece)

    answer = server.exchange(_chunked("/accounts") + b"FFFFFFFFFFFF\r\n", then=endless)
    _refused(answer, "too_large")
    assert sent[0] < limit / 2, f"the server read {sent[0]} bytes of an endless body"
    assert server.answers_at_once() < 1


def test_ordinary_requests_still_work(server):
    """Pacing and the parser leave normal clients alone: a body sent at once, a chunked one, and
    one just under max_request_mb (refused by the schema, not by a limit)."""
    body = json.dumps({"login": "edges@example.com", "password": "a long password"}).encode()
    answer = server.exchange(_post("/accounts", "Connection: close", body=body, length=len(body)))
    assert answer.status == 201, answer
    chunked = json.dumps({"login": "chunked@example.com", "password": "a long password"}).encode()
    answer = server.exchange(_chunked("/accounts") + b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunked), chunked))
    assert answer.status == 201, answer
    big = json.dumps({"login": "big@example.com", "password": "x" * (MAX_MB * 2**20 - 100)}).encode()
    _refused(server.exchange(_post("/accounts", "Connection: close", body=big, length=len(big))), "validation")
