"""The documents send a reader somewhere real, and the REST reference covers the live API.

1. Every relative link in README.md and docs/*.md resolves: the file (or folder) exists inside the
   repository, and a ``#anchor`` matches a heading of the target as GitHub renders it (lower case,
   punctuation other than ``-`` and ``_`` dropped, each space a ``-``, repeats of a slug numbered
   ``-1``, ``-2``, ...). Links inside code blocks and code spans are not links and are skipped, as
   are absolute URLs (``http:``, ``mailto:``, ...).
2. Every operation of the live OpenAPI document (method and path) has a heading ``METHOD /path`` in
   docs/api.md (code spans allowed), and every such heading names a live operation.
3. The worked examples of docs/api.md. The convention: inside the section of an operation, a line
   that is exactly ``**Request**`` is followed by a fenced ``http`` block holding the request
   (``METHOD /path?query HTTP/1.1``, headers, an empty line, the body), and a line that is exactly
   ``**Answer**`` by a fenced ``http`` block holding the answer (``HTTP/1.1 <status> <reason>``,
   headers, an empty line, the body). Every section has exactly one of each. A body whose
   ``Content-Type`` is ``application/json`` must parse as JSON; a request body may use only the
   fields the operation's request schema declares (at every level the schema lists its
   properties), and an answer body only the fields of the documented answer of that status.
   Other bodies (image bytes) are described in words, in parentheses. The request line must name
   the operation of its section (path parameters filled in), and the answer status must be one the
   OpenAPI document lists for the operation (or its ``default``).

The OpenAPI document is read from the app itself, never from a copy, so the test follows schema
changes. It needs no database or Redis: building the app and its document touches neither.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
API_DOC = ROOT / "docs" / "api.md"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
NOT_OPERATIONS = ("/docs", "/openapi", "/swagger", "/static")

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


# ---------------------------------------------------------------------------- markdown reading

def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def heading_text(raw: str) -> str:
    """The text GitHub renders for a heading: code spans unwrapped, links reduced to their text."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), raw)
    text = INLINE_LINK.sub(lambda m: m.group(1), text)
    return text.replace("**", "").strip()


def slug(text: str) -> str:
    """GitHub's anchor for a heading text (github-slugger)."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in prose_lines(text):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(heading_text(m.group(2)))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    for m in re.finditer(r"<a\s+(?:name|id)=\"([^\"]+)\"", text):
        out.add(m.group(1))
    return out


def links(text: str) -> Iterator[tuple[int, str]]:
    for number, line in prose_lines(text):
        m = REFERENCE_DEF.match(line)
        if m:
            yield number, m.group(1)
            continue
        without_code = CODE_SPAN.sub("", line)
        for m in INLINE_LINK.finditer(without_code):
            yield number, m.group(2)


def broken_links(doc: Path, text: str | None = None) -> list[str]:
    """Links of ``doc`` (or of ``text`` placed at ``doc``) that do not resolve."""
    problems = []
    text = doc.read_text(encoding="utf-8") if text is None else text
    for number, target in links(text):
        if not target or SCHEME.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        where = f"{doc.relative_to(ROOT)}:{number}: {target}"
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if ROOT not in dest.parents and dest != ROOT:
            problems.append(f"{where} (leaves the repository)")
            continue
        if dest != doc and not dest.exists():
            problems.append(f"{where} (no such file)")
            continue
        if not anchor:
            continue
        if dest.suffix != ".md":
            if not re.fullmatch(r"L\d+(-L\d+)?", anchor):
                problems.append(f"{where} (anchor into a file that is not markdown)")
            continue
        target_text = text if dest == doc else dest.read_text(encoding="utf-8")
        if anchor not in anchors(target_text):
            problems.append(f"{where} (no heading with this anchor in {dest.relative_to(ROOT)})")
    return problems


def test_slug_follows_github() -> None:
    assert slug(heading_text("Service side: matching, verifiers, matcher workers")) == \
        "service-side-matching-verifiers-matcher-workers"
    assert slug(heading_text("`POST /matcher/faces`")) == "post-matcherfaces"
    assert slug(heading_text("GET /faces/{face_id}")) == "get-facesface_id"
    assert slug(heading_text("Measured (2026-12-04, this 2-core VM, `tests/x.py`)")) == \
        "measured-2026-12-04-this-2-core-vm-testsxpy"
    assert anchors("# A\n## A\n```\n# A\n```\n### A!\n") == {"a", "a-1", "a-2"}


def test_link_checker_finds_what_does_not_resolve() -> None:
    probe = ROOT / "docs" / "probe.md"
    text = ("# Probe\n## Two words\n"
            "[ok](errors.md) [ok](#two-words) [ok](../README.md#two-commands) [ok](https://example.com/x#y)\n"
            "[bad](errors.md#no-such-heading) [bad](#three-words) [bad](nowhere.md) [bad](../../outside.md)\n"
            "`[not a link](nowhere.md)`\n```\n[not a link](nowhere.md)\n```\n")
    found = broken_links(probe, text)
    assert [line.split(": ", 1)[1].split(" (")[0] for line in found] == [
        "errors.md#no-such-heading", "#three-words", "nowhere.md", "../../outside.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(doc: Path) -> None:
    problems = broken_links(doc)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------- the REST reference

@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    from app import create_app

    r = create_app().test_client().get("/openapi.json")
    assert r.status_code == 200
    return r.get_json()


def operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ops = {}
    for path, item in spec["paths"].items():
        if path.startswith(NOT_OPERATIONS):
            continue
        for method, op in item.items():
            if method.upper() in METHODS:
                ops[f"{method.upper()} {path}"] = op
    return ops


def sections() -> dict[str, str]:
    """``METHOD /path`` heading -> the text of its section (up to the next heading)."""
    text = API_DOC.read_text(encoding="utf-8")
    out: dict[str, str] = {}
    current: str | None = None
    fence: str | None = None
    for line in text.splitlines():
        m = FENCE.match(line)
        if m:
            fence = m.group(1) if fence is None else (None if m.group(1) == fence else fence)
        h = HEADING.match(line) if fence is None and not m else None
        if h:
            name = heading_text(h.group(2))
            current = name if re.fullmatch(rf"(?:{'|'.join(METHODS)}) /\S*", name) else None
            if current is not None:
                assert current not in out, f"two sections for {current}"
                out[current] = ""
            continue
        if current is not None:
            out[current] += line + "\n"
    return out


def test_every_operation_has_a_section(openapi: dict[str, Any]) -> None:
    documented = set(sections())
    live = set(operations(openapi))
    assert sorted(live - documented) == [], "operations without a section in docs/api.md"
    assert sorted(documented - live) == [], "sections of docs/api.md for no live operation"


def example(section: str, label: str) -> str:
    blocks = re.findall(rf"^\*\*{label}\*\*\s*\n+```http\n(.*?)^```", section, flags=re.M | re.S)
    assert len(blocks) == 1, f"expected one **{label}** block, found {len(blocks)}"
    return blocks[0]


def split_http(block: str) -> tuple[str, dict[str, str], str]:
    head, _, body = block.partition("\n\n")
    first, *header_lines = head.splitlines()
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        assert sep, f"not a header line: {line!r}"
        headers[name.strip().lower()] = value.strip()
    return first.strip(), headers, body.strip()


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def undeclared(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "") -> list[str]:
    """Fields of ``value`` that ``schema`` does not declare, wherever the schema lists properties."""
    schema = resolve(spec, schema)
    if "allOf" in schema:  # every part applies: their properties add up
        parts = [resolve(spec, s) for s in schema["allOf"]]
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        merged["properties"] = {**{k: v for part in parts for k, v in part.get("properties", {}).items()},
                                **schema.get("properties", {})}
        schema = merged
    if "properties" not in schema:
        for key in ("anyOf", "oneOf"):  # alternatives: the value is declared if one of them declares it
            if key in schema:
                options = [undeclared(spec, s, value, where) for s in schema[key]]
                return [] if any(not o for o in options) else min(options, key=len)
    # (an anyOf beside declared properties only adds rules between them, e.g. "one of these is required")
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        out = []
        for name, item in value.items():
            if props is not None and name in props:
                out += undeclared(spec, props[name], item, f"{where}{name}.")
            elif isinstance(extra, dict):
                out += undeclared(spec, extra, item, f"{where}{name}.")
            elif props is not None and extra is not True:
                out.append(f"{where}{name}")
        return out
    if isinstance(value, list) and "items" in schema:
        return [p for n, item in enumerate(value) for p in undeclared(spec, schema["items"], item, f"{where}{n}.")]
    return []


def path_pattern(path: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/?]+", re.escape(path)) + r"(\?.*)?")


def json_schema(content: dict[str, Any]) -> dict[str, Any] | None:
    for ctype, media in content.items():
        if ctype.startswith("application/json"):
            return media.get("schema", {})
    return None


def test_worked_examples(openapi: dict[str, Any]) -> None:
    ops = operations(openapi)
    problems: list[str] = []
    for name, section in sections().items():
        if name not in ops:
            continue  # reported by test_every_operation_has_a_section
        op = ops[name]
        method, path = name.split(" ", 1)
        try:
            request_line, headers, body = split_http(example(section, "Request"))
            parts = request_line.split()
            assert len(parts) == 3 and parts[2] == "HTTP/1.1", f"bad request line {request_line!r}"
            assert parts[0] == method and path_pattern(path).fullmatch(parts[1]), \
                f"request line {request_line!r} is not {name}"
            if headers.get("content-type", "").startswith("application/json"):
                sent = json.loads(body)
                schema = json_schema(op.get("requestBody", {}).get("content", {}))
                assert schema is not None, "a JSON body for an operation that takes none"
                extra = undeclared(openapi, schema, sent)
                assert not extra, f"request fields the schema does not declare: {extra}"
            elif body:
                assert body.startswith("("), f"a non-JSON body is described in parentheses: {body[:40]!r}"

            status_line, headers, body = split_http(example(section, "Answer"))
            m = re.fullmatch(r"HTTP/1\.1 (\d{3}) .+", status_line)
            assert m, f"bad status line {status_line!r}"
            status = m.group(1)
            responses = op.get("responses", {})
            assert status in responses or "default" in responses, f"status {status} not documented"
            if headers.get("content-type", "").startswith("application/json"):
                answered = json.loads(body)
                schema = json_schema(responses.get(status, {}).get("content", {}))
                if schema is not None:
                    extra = undeclared(openapi, schema, answered)
                    assert not extra, f"answer fields the schema does not declare: {extra}"
            elif body:
                assert body.startswith("("), f"a non-JSON body is described in parentheses: {body[:40]!r}"
        except (AssertionError, ValueError) as e:
            problems.append(f"{name}: {e}")
    assert not problems, "\n".join(problems)


def test_example_checker_catches_an_undeclared_field(openapi: dict[str, Any]) -> None:
    op = operations(openapi)["POST /lists"]
    schema = json_schema(op["requestBody"]["content"])
    assert undeclared(openapi, schema, {"user_data": "x"}) == []
    assert undeclared(openapi, schema, {"user_data": "x", "colour": "red"}) == ["colour"]
    spec = {"components": {"schemas": {"A": {"properties": {"a": {}}}}}}
    ruled = {"properties": {"x": {}, "y": {}}, "anyOf": [{"required": ["x"]}, {"required": ["y"]}]}
    assert undeclared(spec, ruled, {"x": 1, "y": 2}) == []
    assert undeclared(spec, ruled, {"x": 1, "z": 2}) == ["z"]
    assert undeclared(spec, {"allOf": [{"$ref": "#/components/schemas/A"}, {"properties": {"b": {}}}]},
                      {"a": 1, "b": 2, "c": 3}) == ["c"]
    either = {"oneOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]}
    assert undeclared(spec, either, {"b": 1}) == []
    assert undeclared(spec, either, {"c": 1}) == ["c"]


def test_sections_follow_the_services_order(openapi: dict[str, Any]) -> None:
    """Sections come service by service in the order of ``app.SERVICES`` (the blueprints' order)."""
    from app import SERVICES

    services = {name: n for n, name in enumerate(SERVICES)}
    blueprint_service = {}
    for name in SERVICES:
        module = __import__(f"app.{name}.api", fromlist=["BLUEPRINTS"])
        for blp in module.BLUEPRINTS:
            blueprint_service[blp.name] = services[name]
    ops = operations(openapi)  # flask-smorest tags each operation with its blueprint's name
    order = [blueprint_service[ops[name]["tags"][0]] for name in sections() if name in ops]
    assert order == sorted(order), "docs/api.md sections are not grouped in the order of app.SERVICES"
