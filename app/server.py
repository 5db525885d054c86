"""The API's HTTP server: gunicorn with a worker of our own (``facegate api``).

gunicorn refuses some requests before the application sees them (a request line or headers past
its limits, malformed HTTP, a broken chunked body) and answered those in HTML. :class:`Worker`
answers them in the API's error shape, with a ``Luna-Request-Id``, and bounds how long a client
may take to send its request, so a silent or trickling client cannot hold a thread:

- no single wait for request data (request line, headers or body) may exceed
  ``request_body_timeout_s``;
- in all, a request may wait ``request_body_timeout_s`` plus one second per
  :data:`MIN_BYTES_PER_S` bytes it delivered (the rule of Apache's mod_reqtimeout), so a
  slow-loris that sends a byte just before each timeout is cut off too.

A request cut off while the application reads its body answers 408 ``body_timeout`` from the
application; one cut off before its headers are complete gets the same answer from the worker.
Either way the connection is then closed and the thread is free.
"""
from __future__ import annotations

import json
import socket
import time
from http import HTTPStatus
from typing import Any, Callable, Iterable

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import BadRequest, RequestTimeout

from app import settings
from app.errors import APIError
from app.observability import REQUEST_ID_HEADER, new_request_id

# gunicorn's limits, named here because the docs promise them (docs/architecture.md, Request limits).
LIMIT_REQUEST_LINE = 4094  # bytes of "METHOD /path?query HTTP/1.1"
LIMIT_REQUEST_FIELDS = 100  # header fields
LIMIT_REQUEST_FIELD_SIZE = 8190  # bytes of one header field
THREADS = 8
MIN_BYTES_PER_S = 1024


class RequestStalled(RequestTimeout):
    """The client stopped sending, or sends too slowly. An HTTP error rather than an OSError, so
    werkzeug (which reads an OSError as a client that went away) lets it reach the error handler."""

    error_kind = "body_timeout"


class BodyRefused(BadRequest):
    """The body broke HTTP framing (a malformed chunk, for one) while the application read it."""

    error_kind = "bad_request"


class PacedSocket(socket.socket):
    """A client connection whose reads follow the two rules of the module docstring. The clock
    counts only time spent waiting for the client, not the application's own work between reads."""

    pause_s: float = 30.0

    @classmethod
    def adopt(cls, sock: socket.socket, pause_s: float) -> PacedSocket:
        timeout = sock.gettimeout()
        paced = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        paced.settimeout(timeout)
        paced.pause_s = pause_s
        paced.begin_request()
        return paced

    def begin_request(self) -> None:
        self.waited = 0.0
        self.received = 0
        self.request: Any = None  # gunicorn's, once its headers are parsed (Worker.handle_request)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        prior = self.gettimeout()
        if prior == 0.0:  # non-blocking: the caller polls, nobody waits here
            return super().recv(bufsize, flags)
        wait = min(self.pause_s, self.pause_s + self.received / MIN_BYTES_PER_S - self.waited)
        if wait <= 0:
            raise self._stalled(prior, wait)
        # A caller that bounds the read itself (gunicorn draining an unread body) keeps its bound.
        ours = prior is None or wait < prior
        self.settimeout(wait if ours else prior)
        started = time.monotonic()
        try:
            data = super().recv(bufsize, flags)
        except TimeoutError:
            if not ours:
                raise
            raise self._stalled(prior, wait) from None
        finally:
            self.waited += time.monotonic() - started
            self.settimeout(prior)
        self.received += len(data)
        return data

    def _stalled(self, prior: float | None, wait: float) -> Exception:
        why = (f"no request data for {self.pause_s:g} s" if wait == self.pause_s else
               f"the request arrives slower than {MIN_BYTES_PER_S} bytes/s after its first {self.pause_s:g} s")
        # Inside a read the caller bounded itself, it expects its own TimeoutError.
        if prior is not None:
            return TimeoutError(why)
        if self.request is not None:
            self.request.must_close = True  # the 408 says "Connection: close", as the connection is
        return RequestStalled(why)


class _GuardedInput:
    """``wsgi.input`` whose framing errors reach the application as a 400, not as an exception
    it would answer with 500."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except http_errors.ParseException:
            raise BodyRefused("malformed request body framing (chunked encoding)") from None

    def read(self, size: int | None = None) -> bytes:
        return self._call(self._body.read, size)

    def readline(self, size: int | None = None) -> bytes:
        return self._call(self._body.readline, size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return self._call(self._body.readlines, hint)

    def __iter__(self) -> _GuardedInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _guard_input(wsgi: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"] = _GuardedInput(environ["wsgi.input"])
        return wsgi(environ, start_response)

    return app


# What gunicorn refuses, as (kind, status, detail). Fixed texts: gunicorn's own messages quote the
# request back, and an error detail never carries more than the client needs.
_REFUSALS: list[tuple[type[BaseException] | tuple[type[BaseException], ...], str, int, str]] = [
    (http_errors.LimitRequestLine, "uri_too_long", 414,
     f"request line longer than {LIMIT_REQUEST_LINE} bytes; send long inputs in the body"),
    (http_errors.LimitRequestHeaders, "headers_too_large", 431,
     f"request headers over the limits ({LIMIT_REQUEST_FIELDS} fields of at most "
     f"{LIMIT_REQUEST_FIELD_SIZE} bytes each)"),
    (http_errors.ExpectationFailed, "bad_request", 417, "unsupported Expect header"),
    (http_errors.ForbiddenProxyRequest, "bad_request", 403, "proxy protocol from an untrusted address"),
    (http_errors.UnsupportedTransferCoding, "bad_request", 400, "unsupported Transfer-Encoding"),
    ((http_errors.InvalidChunkSize, http_errors.ChunkMissingTerminator, http_errors.InvalidChunkExtension),
     "bad_request", 400, "malformed chunked body"),
    ((http_errors.InvalidRequestLine, http_errors.InvalidRequestMethod, http_errors.InvalidHTTPVersion),
     "bad_request", 400, "malformed request line"),
    ((http_errors.InvalidHeader, http_errors.InvalidHeaderName, http_errors.ObsoleteFolding),
     "bad_request", 400, "malformed header"),
    (http_errors.ParseException, "bad_request", 400, "malformed HTTP request"),
]


def refusal(exc: BaseException) -> tuple[str, int, str] | None:
    """The answer to a request gunicorn could not take, or None when the fault is ours."""
    if isinstance(exc, RequestStalled):
        return "body_timeout", 408, exc.description or ""
    if isinstance(exc, (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName,
                        http_errors.ConfigurationProblem)):
        return None  # a header the application tried to send, or gunicorn's configuration
    for classes, kind, status, detail in _REFUSALS:
        if isinstance(exc, classes):
            return kind, status, detail
    return None


def error_answer(kind: str, status: int, detail: str) -> bytes:
    """A complete HTTP response in the API's error shape, closing the connection."""
    body = json.dumps(APIError(kind, detail, status=status).to_dict()).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{REQUEST_ID_HEADER}: {new_request_id()}\r\n\r\n")
    return head.encode("latin-1") + body


class Worker(ThreadWorker):
    """gunicorn's threaded worker with paced client reads and answers in the API's error shape."""

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = _guard_input(self.wsgi)

    def enqueue_req(self, conn: Any) -> None:
        # Every connection passes here first, right after accept (TLS would wrap the socket again,
        # so it is left alone; facegate serves plain HTTP behind whatever terminates TLS).
        if not isinstance(conn.sock, PacedSocket) and not self.cfg.is_ssl:
            conn.sock = PacedSocket.adopt(conn.sock, settings.current().request_body_timeout_s)
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        if isinstance(conn.sock, PacedSocket):
            conn.sock.begin_request()
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        if isinstance(conn.sock, PacedSocket):
            conn.sock.request = req
        return super().handle_request(req, conn)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        answer = refusal(exc)
        if answer is None:
            self.log.exception("error handling a request")
            answer = ("internal", 500, "unexpected error; see the service log")
        else:
            self.log.warning("refused a request from %s: %d %s", (addr or ("unix",))[0], answer[1], answer[0])
        try:
            util.write_nonblock(client, error_answer(*answer))
        except OSError:
            self.log.debug("the client left before its error answer")


class Server(BaseApplication):  # type: ignore[misc]
    """The API under gunicorn with :class:`Worker`, configured from the settings."""

    def __init__(self, host: str | None = None, port: int | None = None) -> None:
        self.host, self.port = host, port
        super().__init__()

    def load_config(self) -> None:
        s = settings.current()
        for name, value in {
            "bind": f"{self.host or s.api_host}:{self.port or s.api_port}",
            "workers": s.api_workers,
            "worker_class": f"{__name__}.Worker",
            "threads": THREADS,
            "timeout": int(s.worker_wait_timeout_s) + 30,
            "limit_request_line": LIMIT_REQUEST_LINE,
            "limit_request_fields": LIMIT_REQUEST_FIELDS,
            "limit_request_field_size": LIMIT_REQUEST_FIELD_SIZE,
            "accesslog": "-",
            # gunicorn's control socket sits at one path per user ($HOME/.gunicorn/gunicorn.ctl), so
            # a second server on the machine (a test run, another installation) takes it over;
            # nothing here uses gunicornc.
            "control_socket_disable": True,
        }.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        from app import create_app

        return create_app()


def serve(host: str | None = None, port: int | None = None) -> None:
    """Serve the API until stopped (``facegate api``)."""
    Server(host, port).run()
