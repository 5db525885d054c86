"""Hostile and careless inputs answer 4xx in the error shape, never 500: JSON past the parser's
limits (numbers, nesting, lone surrogates, NaN), text that is not UTF-8 in paths, query strings,
forms and headers, and the numbers past 64 bits fixed before. Each class goes to several
endpoints; the server-level classes (request line, headers, slow bodies) are in
tests/platform/test_http_edges.py."""
from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest

from app.errors import ERRORS
from app.jsonparse import MAX_DEPTH, MAX_NUMBER_CHARS

RID = re.compile(r"^\d{10},[0-9a-f-]{36}$")

# JSON endpoints of different services; the bodies never get as far as a handler or a worker.
JSON_ENDPOINTS = [("POST", "/accounts"), ("POST", "/lists"), ("POST", "/faces"), ("POST", "/matcher/raw"),
                  ("POST", "/verifiers"), ("POST", "/attributes"), ("POST", "/sdk"), ("POST", "/tokens")]


def assert_refused(r: Any, kind: str) -> None:
    error = ERRORS[kind]
    assert r.status_code == error.status, (r.status_code, r.get_data()[:300])
    assert set(r.json) == {"error_code", "desc", "detail"}
    assert r.json["error_code"] == error.code, r.json
    assert RID.match(r.headers["Luna-Request-Id"])


def send_json(client: Any, account: Any, method: str, url: str, text: str | bytes) -> Any:
    headers = {} if url == "/accounts" else account.auth
    return client.open(url, method=method, data=text, content_type="application/json", headers=headers)


def _nest(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + "1" + close * depth


HUGE_NUMBERS = {
    "5000-digit integer": '{"user_data": ' + "7" * 5000 + "}",
    "just over the limit": '{"a": [' + "1" * (MAX_NUMBER_CHARS + 1) + "]}",
    "negative and huge": '{"a": -' + "9" * 400 + "}",
    "200-digit fraction": '{"a": 0.' + "3" * 200 + "}",
    "exponent overflows": '{"a": 1e999}',
    "negative overflow": '{"a": [-1e400]}',
}
DEEP = {
    "arrays one past the limit": _nest(MAX_DEPTH + 1),
    "arrays 10,000 deep": _nest(10_000),
    "objects 10,000 deep": '{"a":' * 10_000 + "1" + "}" * 10_000,
    "mixed 100,000 deep": '[{"a":' * 50_000 + "1" + "}]" * 50_000,
    "unclosed 10,000": "[" * 10_000,
}
SURROGATES = {
    "high alone": '{"login": "\\ud800@example.com", "password": "long password"}',
    "low alone": '{"user_data": "\\udfff"}',
    "in a key": '{"\\udc00": 1}',
    "deep in a list": '{"a": [[["ok", "\\udbff"]]]}',
    "high then text": '{"a": "\\ud83dx"}',
    "pair reversed": '{"a": "\\ude00\\ud83d"}',
}
NULS = {"in a value": '{"user_data": "a\\u0000b"}', "in a nested key": '{"content": {"x\\u0000": []}}'}
NOT_JSON_NUMBERS = {"NaN": '{"a": NaN}', "Infinity": '{"a": Infinity}', "-Infinity": '{"a": [-Infinity]}'}
NOT_UTF8 = {"CESU surrogate": b'{"a": "\xed\xa0\x80"}', "stray byte": b'{"a": "\xff"}',
            "UTF-16": '{"a": 1}'.encode("utf-16"), "overlong": b'{"a": "\xc0\xaf"}'}


@pytest.mark.parametrize("method,url", JSON_ENDPOINTS)
@pytest.mark.parametrize("cls", [HUGE_NUMBERS, DEEP, SURROGATES, NULS, NOT_JSON_NUMBERS, NOT_UTF8],
                         ids=["huge-numbers", "deep-nesting", "lone-surrogates", "nuls", "nan-infinity", "not-utf8"])
def test_json_past_the_limits_is_bad_json(client, account, cls, method, url):
    for name, body in cls.items():
        r = send_json(client, account, method, url, body)
        assert_refused(r, "bad_json")
        assert r.json["detail"].startswith("request body: "), (name, r.json)


def test_the_detail_names_the_problem(client, account):
    cases = [(HUGE_NUMBERS["5000-digit integer"], f"more than {MAX_NUMBER_CHARS} characters"),
             (HUGE_NUMBERS["exponent overflows"], "out of range"),
             (DEEP["arrays 10,000 deep"], f"deeper than {MAX_DEPTH} levels"),
             (SURROGATES["in a key"], "lone surrogate"),
             (NULS["in a nested key"], "NUL character"),
             (NOT_JSON_NUMBERS["NaN"], "NaN is not a JSON value"),
             (NOT_UTF8["stray byte"], "not valid UTF-8")]
    for body, words in cases:
        r = send_json(client, account, "POST", "/lists", body)
        assert words in r.json["detail"], r.json


def test_json_at_the_limits_is_accepted(client, account):
    """The limits are where the docs say: 64 levels, 100-character numbers and a surrogate pair
    (an emoji) pass the parser and reach the handler."""
    at_limit = '{"user_data": "\\ud83d\\ude00", "x": ' + _nest(MAX_DEPTH - 1) + "}"
    r = send_json(client, account, "POST", "/lists", at_limit)
    assert_refused(r, "validation")  # the schema, not the parser: "x" is not a field of a list
    assert "x" in r.json["detail"]
    r = send_json(client, account, "POST", "/lists", '{"user_data": "\\ud83d\\ude00"}')
    assert r.status_code == 201, r.json
    # a 100-character number parses, and the schema then finds it past matcher_limit_max
    r = send_json(client, account, "POST", "/matcher/raw", '{"limit": ' + "9" * MAX_NUMBER_CHARS + "}")
    assert_refused(r, "validation")
    assert "limit" in r.json["detail"]


def test_a_request_without_credentials_is_refused_before_its_body_is_parsed(client):
    r = client.post("/lists", data=DEEP["arrays 10,000 deep"], content_type="application/json")
    assert_refused(r, "auth_required")


QUERIES = ["external_id=%ED%A0%80", "page=%FF", "user_data=%C0%AF", "page=1&list_id=%ED%B2%80",
           "%ED%A0%80=1", "page=%E2%82"]


@pytest.mark.parametrize("url", ["/faces", "/lists", "/verifiers", "/tokens", "/matcher/status"])
def test_query_strings_that_are_not_utf8_are_400(client, account, url):
    for query in QUERIES:
        r = client.get(f"{url}?{query}", headers=account.auth)
        assert_refused(r, "validation")
        assert "not valid UTF-8" in r.json["detail"], (url, query, r.json)


def test_the_detail_names_the_query_parameter(client, account):
    r = client.get("/faces?page=1&external_id=%ED%A0%80", headers=account.auth)
    assert "query parameter 'external_id'" in r.json["detail"]


@pytest.mark.parametrize("path", ["/faces/\xed\xa0\x80", "/lists/\xff\xfe", "/accounts/\xed\xbf\xbf",
                                  "/no/such/\xc0\xaf", "/images/\xed\xa0\x80"])
def test_paths_that_are_not_utf8_are_400(client, account, path):
    # The test client would percent-decode with "replace" itself; a server hands the raw bytes on
    # as PATH_INFO (latin-1, PEP 3333), which is what this sends.
    r = client.get("/version", headers=account.auth, environ_overrides={"PATH_INFO": path})
    assert_refused(r, "validation")
    assert "the path" in r.json["detail"]


def _multipart(*parts: tuple[bytes, bytes | None, bytes]) -> bytes:
    body = b""
    for name, filename, value in parts:
        disposition = b'form-data; name="' + name + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        body += b"--edge\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n"
    return body + b"--edge--\r\n"


MULTIPART_CT = "multipart/form-data; boundary=edge"
FORMS = {
    "surrogate bytes in a filename": _multipart((b"photo", b"\xed\xa0\x80.jpg", b"\xff\xd8\xff\xe0 not a jpeg")),
    "surrogate bytes in a field name": _multipart((b"\xed\xa0\x80", b"a.jpg", b"\xff\xd8\xff")),
    "RFC 2231 filename with a surrogate": b"--edge\r\nContent-Disposition: form-data; name=\"f\"; "
                                          b"filename*=UTF-8''%ED%A0%80.jpg\r\n\r\n\xff\xd8\xff\r\n--edge--\r\n",
    "field value with bad bytes": _multipart((b"images", None, b'[{"url": "\xed\xa0\x80"}]')),
    "field value with a surrogate escape": _multipart((b"images", None, b'[{"url": "\\ud800"}]')),
    "empty": b"--edge--\r\n",
}


@pytest.mark.parametrize("url", ["/images", "/sdk", "/detector", "/iso", "/samples/faces"])
def test_multipart_forms_with_bad_text_are_4xx(client, account, url):
    for name, body in FORMS.items():
        r = client.post(url, data=body, content_type=MULTIPART_CT, headers=account.auth)
        assert 400 <= r.status_code < 500, (url, name, r.status_code, r.get_data()[:300])
        assert set(r.json) == {"error_code", "desc", "detail"}


@pytest.mark.parametrize("field", [b"[" * 5000, b'{"a": ' * 5000 + b"1" + b"}" * 5000], ids=["arrays", "objects"])
@pytest.mark.parametrize("url", ["/sdk", "/detector", "/iso"])
def test_json_form_fields_meet_the_same_limits(client, account, url, field):
    r = client.post(url, data=_multipart((b"thresholds", None, field)), content_type=MULTIPART_CT,
                    headers=account.auth)
    assert_refused(r, "validation")


HEADER_VALUES = ["\xed\xa0\x80", "\xff" * 40, "1700000000," + "\xe9" * 36, "x" * 8000, "1700000000,\t"]


@pytest.mark.parametrize("url", ["/version", "/faces", "/lists"])
def test_request_ids_that_are_not_text(client, account, url):
    for value in HEADER_VALUES:
        assert_refused(client.get(url, headers={**account.auth, "Luna-Request-Id": value}), "bad_request_id")


@pytest.mark.parametrize("url", ["/faces", "/lists", "/tokens"])
def test_malformed_basic_credentials(client, url):
    for value in ["x" * 8000, "1700000000,\t", "Og==", "////", base64.b64encode(b"\xed\xa0\x80:pw").decode()]:
        assert_refused(client.get(url, headers={"Authorization": f"Basic {value}"}), "bad_credentials")


@pytest.mark.parametrize("value", HEADER_VALUES[:3], ids=["surrogate-bytes", "ff-bytes", "latin-1"])
def test_basic_credentials_that_are_not_ascii(client, value):
    assert_refused(client.get("/faces", headers={"Authorization": f"Basic {value}"}), "bad_credentials")


@pytest.mark.parametrize("query", [f"page={2**63 - 1}", f"page={2**64}", f"page_size={10**30}",
                                   f"page=-{2**63}", "page=1e400", "page=NaN"])
@pytest.mark.parametrize("url", ["/faces", "/lists", "/verifiers", "/tokens"])
def test_numbers_past_64_bits_stay_fixed(client, account, url, query):
    assert_refused(client.get(f"{url}?{query}", headers=account.auth), "validation")


def test_a_streamed_body_past_max_request_mb_is_413_not_cut_short(client, account):
    """A body of unknown length (chunked) is read up to the limit; werkzeug alone would hand the
    handler its first max_request_mb bytes as if that were all."""
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    fits = b'{"user_data": "streamed"}'
    for url, headers in (("/accounts", {}), ("/lists", account.auth), ("/images", account.auth)):
        for size in (limit + 1, limit + 4096, 3 * limit):
            r = client.post(url, input_stream=io.BytesIO(fits + b" " * (size - len(fits))), headers=headers,
                            content_type="application/json" if url != "/images" else "image/jpeg",
                            environ_overrides={"wsgi.input_terminated": True})
            assert_refused(r, "too_large")
    r = client.post("/lists", input_stream=io.BytesIO(fits + b" " * (limit - len(fits))), headers=account.auth,
                    content_type="application/json", environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 201, r.json  # exactly at the limit
