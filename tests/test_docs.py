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
4. The field tables of docs/api.md. Inside a section, a line ``**Query parameters**``,
   ``**Body** (`application/json`)`` or ``**Answer `2xx`**`` is followed by a table whose first
   column holds field names in code spans: ``a`` a field, ``a.b`` a field of the object ``a``,
   ``a[].b`` a field of the items of the array ``a``. The names must be exactly the query
   parameters, the request body's fields, the fields of that answer the document declares; a
   table that goes into a nested object names all of its fields, one that stops at ``a`` is left
   alone. A paragraph after a table that begins with one of its fields, followed by a table, lists
   that field's fields (``permissions``). Query parameters, a JSON body and a JSON answer with
   fields must have their table; only a body that may also be images is described in words.

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
    return without_test_task_types(r.get_json())


def without_test_task_types(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` less the operations of task types the test suite registers (``suite_task_paths``)."""
    from tests.conftest import suite_task_paths

    for path in suite_task_paths():
        spec["paths"].pop(path, None)
    return spec


def operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ops = {}
    for path, item in spec["paths"].items():
        if path.startswith(NOT_OPERATIONS):
            continue
        for method, op in item.items():
            if method.upper() in METHODS:
                ops[f"{method.upper()} {path}"] = op
    return ops


def sections(text: str | None = None) -> dict[str, str]:
    """``METHOD /path`` heading -> the text of its section (up to the next heading), of docs/api.md
    or of ``text``."""
    text = API_DOC.read_text(encoding="utf-8") if text is None else text
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


def merged(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$ref`` followed and the properties of its ``allOf`` parts added up."""
    schema = resolve(spec, schema)
    if "allOf" in schema:  # every part applies: their properties add up
        parts = [merged(spec, s) for s in schema["allOf"]]
        out = {k: v for k, v in schema.items() if k != "allOf"}
        out["properties"] = {**{k: v for part in parts for k, v in part.get("properties", {}).items()},
                             **schema.get("properties", {})}
        schema = out
    return schema


def undeclared(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "") -> list[str]:
    """Fields of ``value`` that ``schema`` does not declare, wherever the schema lists properties."""
    schema = merged(spec, schema)
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


# ---------------------------------------------------------------------------- the field tables

TABLE_LABEL = re.compile(r"^\*\*(?:(Body)\*\* \(`application/json`\)|(Query parameters)\*\*|Answer `(2\d\d)`\*\*)\s*$")
PROSE_LABEL = re.compile(r"^\*\*(?:(Body)|Answer `(2\d\d)`):\*\*")
ROW_NAME = re.compile(r"[A-Za-z0-9_]+(?:\[\])?(?:\.[A-Za-z0-9_]+(?:\[\])?)*")  # names keep their case (roc: key_FPRs)


def field_tables(section: str) -> tuple[dict[str, list[str]], set[str], list[str]]:
    """The field tables of a section: label (``Body``, ``Query parameters``, ``Answer 2xx``) -> the
    names in the table's first column; the labels the section answers in words instead (``Body``,
    ``Answer 2xx``); and what does not follow the convention. A field table comes right after its
    label line (blank lines between). A paragraph after it that begins with one of its fields in a
    code span, followed by a table, lists the fields of that field (``permissions``: its
    resources), read as rows ``field.name``. Other tables are not field tables."""
    tables: dict[str, list[str]] = {}
    in_words: set[str] = set()
    problems: list[str] = []
    label: str | None = None  # the label of the last field table, or of a label line seen
    pending: str | None = None  # the prefix of the next table's rows: a label line or paragraph seen
    reading: str | None = None  # the prefix of the rows of the table being read
    previous = ""
    for _, line in prose_lines(section + "\n"):
        if line.startswith("|") and (reading is not None or pending is not None):
            if reading is None:  # the header line
                reading, pending = pending, None
            else:
                cell = line.strip("|").split("|", 1)[0].strip()
                m = re.fullmatch(r"`([^`]+)`", cell)
                if set(cell) <= set("-: "):
                    pass  # the separator line
                elif not m or not ROW_NAME.fullmatch(m.group(1)):
                    problems.append(f"**{label}**: first cell {cell!r} is not a field name in a code span")
                elif reading + m.group(1) in tables[label]:
                    problems.append(f"**{label}**: `{reading + m.group(1)}` listed twice")
                else:
                    tables[label].append(reading + m.group(1))
        elif not line.strip():
            reading = None  # a table ends at a blank line
        else:
            reading = None
            if pending == "":
                problems.append(f"**{label}** is not followed by a table")
                pending = None
            if pending is not None and not previous.strip():
                pending = None  # a new paragraph, no table for the last one
            m = TABLE_LABEL.match(line)
            w = PROSE_LABEL.match(line)
            c = re.match(r"`([^`]+)` ", line)
            if m or w:
                if m:
                    label, pending = m.group(1) or m.group(2) or f"Answer {m.group(3)}", ""
                else:
                    label = "Body" if w.group(1) else f"Answer {w.group(2)}"
                if label in tables or label in in_words:
                    problems.append(f"two **{label}** labels")
                if m:
                    tables[label] = []
                else:
                    in_words.add(label)
                    label = None
            elif c and label in tables and c.group(1) in tables[label] and not previous.strip():
                pending = c.group(1) + "."
        previous = line
    if pending == "":
        problems.append(f"**{label}** is not followed by a table")
    return tables, in_words, problems


def declared(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The fields ``schema`` declares, name -> schema, as ``undeclared`` reads it: its properties
    (``allOf`` parts merged); a schema without properties of its own declares what any of its
    ``anyOf``/``oneOf`` alternatives declares (a table lists every field that may come; the null
    alternative of a nullable object declares none). An array declares nothing itself: a table
    names the fields of its items ``name[].field``."""
    schema = merged(spec, schema)
    if "properties" in schema:
        return dict(schema["properties"])
    out: dict[str, Any] = {}
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key, []):
            out.update(declared(spec, option))
    return out


def items_of(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of the items of an array (or of a nullable array), None for anything else."""
    schema = merged(spec, schema)
    for option in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
        option = merged(spec, option)
        if "items" in option:
            return option["items"]
    return None


def table_mismatches(spec: dict[str, Any], schema: dict[str, Any], rows: list[str]) -> list[str]:
    """How the names of a table differ from the fields ``schema`` declares. A row ``a`` is a field
    of the schema, ``a.b`` a field of the object ``a``, ``a[].b`` a field of the items of the
    array ``a``. A table need not go into a nested object (``permissions``: its own table); once it
    names one field of it, it must name them all, exactly as at the top."""
    children: dict[str, list[str]] = {"": []}
    for row in rows:
        parent, _, name = row.rpartition(".")
        children.setdefault(parent, []).append(name)
    out: list[str] = []
    for parent, names in children.items():
        prefix = f"{parent}." if parent else ""
        if parent and parent.removesuffix("[]") not in rows:
            out.append(f"`{prefix}{names[0]}` without a row for `{parent.removesuffix('[]')}`")
            continue
        at: dict[str, Any] | None = schema
        for segment in parent.split(".") if parent else []:
            field = declared(spec, at).get(segment.removesuffix("[]"))
            if field is None:
                break  # the row of this segment is reported as not in the document
            if segment.endswith("[]"):
                at = items_of(spec, field)
                if at is None:
                    out.append(f"`{segment}`: not an array in the document")
                    break
            else:
                at = field
                if items_of(spec, field) is not None:
                    out.append(f"`{segment}`: an array in the document, its fields are `{segment}[].name`")
                    break
        else:
            fields = declared(spec, at)
            out += [f"`{prefix}{n}` not in the document" for n in names if n not in fields]
            out += [f"`{prefix}{n}` missing from the table" for n in fields if n not in names]
    return out


def query_schema(spec: dict[str, Any], name: str, op: dict[str, Any]) -> dict[str, Any]:
    """The query parameters of an operation as the properties of one schema. Path parameters are
    named in the section's heading, which must be the live path."""
    path = name.split(" ", 1)[1]
    params = [*spec["paths"][path].get("parameters", []), *op.get("parameters", [])]
    return {"properties": {p["name"]: p.get("schema", {}) for p in params if p["in"] == "query"}}


def stale_tables(spec: dict[str, Any], docs: dict[str, str]) -> tuple[list[str], int, int]:
    """For every section of ``docs`` (name -> text) naming a live operation: problems, tables and
    rows checked. Each field table must name exactly the fields the document declares: **Query
    parameters** its query parameters, **Body** its JSON request body, **Answer `2xx`** the JSON
    answer of that status. And a section must have the table where the document declares such
    fields: query parameters, a JSON request body, a JSON answer; only a body that may also come as
    images is described in words (``**Body:** ...``)."""
    ops = operations(spec)
    problems: list[str] = []
    n_tables = n_rows = 0
    for name, section in docs.items():
        if name not in ops:
            continue  # reported by test_every_operation_has_a_section
        op = ops[name]
        tables, in_words, found = field_tables(section)
        problems += [f"{name}: {p}" for p in found]
        body = op.get("requestBody", {}).get("content", {})
        expected: dict[str, dict[str, Any] | None] = {
            "Query parameters": query_schema(spec, name, op),
            "Body": json_schema(body),
            **{f"Answer {status}": json_schema(answer.get("content", {}))
               for status, answer in op.get("responses", {}).items() if status.startswith("2")},
        }
        for label, schema in expected.items():
            if label in tables or schema is None or not declared(spec, schema):
                continue
            if label == "Body" and label in in_words and set(body) != {"application/json"}:
                continue  # a body of images in words, its JSON form too
            problems.append(f"{name}: no **{label}** table for fields the document declares: "
                            f"{sorted(declared(spec, schema))}")
        for label, rows in tables.items():
            schema = expected.get(label)
            if schema is None:
                problems.append(f"{name}: a **{label}** table, the document declares no such fields")
                continue
            n_tables += 1
            n_rows += len(rows)
            problems += [f"{name}: **{label}**: {p}" for p in table_mismatches(spec, schema, rows)]
    return problems, n_tables, n_rows


def test_field_tables_match_the_document(openapi: dict[str, Any]) -> None:
    problems, n_tables, n_rows = stale_tables(openapi, sections())
    assert not problems, "docs/api.md tables that differ from the OpenAPI document:\n" + "\n".join(problems)
    assert n_tables >= 80 and n_rows >= 400, f"only {n_tables} tables, {n_rows} rows read: the reader broke"


def test_table_checker_finds_stale_tables(openapi: dict[str, Any]) -> None:
    stale = """# Probe
### `POST /lists`

**Body** (`application/json`)

| field | type | required (default) | limits | meaning |
| --- | --- | --- | --- | --- |
| `user_data` | string | `""` | length ≤ 128 | free text |
| `colour` | string | no |  | gone from the schema |

**Answer `201`:** the list's id.

### `GET /tokens`

**Answer `200`**

| field | type | limits | meaning |
| --- | --- | --- | --- |
| `tokens` | array of object |  | the tokens |
| `tokens.token_id` | string (uuid) |  | the token's id |
| `page` | integer |  | page number |
| `page_size` | integer |  | items per page |
| `expires` | string |  | not in the document |

**Body** (`application/json`)

| field | type | required (default) | limits | meaning |
| --- | --- | --- | --- | --- |
| `page` | integer | no |  | a body for an operation that takes none |
"""
    problems, n_tables, n_rows = stale_tables(openapi, sections(stale))
    assert (n_tables, n_rows) == (2, 7)
    assert problems == [
        "POST /lists: no **Answer 201** table for fields the document declares: ['list_id']",
        "POST /lists: **Body**: `colour` not in the document",
        "GET /tokens: no **Query parameters** table for fields the document declares: ['page', 'page_size']",
        "GET /tokens: **Answer 200**: `expires` not in the document",
        "GET /tokens: **Answer 200**: `tokens`: an array in the document, its fields are `tokens[].name`",
        "GET /tokens: a **Body** table, the document declares no such fields",
    ]

    text = """**Body** (`application/json`)

| field | type |
| --- | --- |
| `permissions` | object |
| `description` | string |
| description | string |
| `description` | string |

`permissions` maps a resource to its actions,
over two lines:

| resource | actions |
| --- | --- |
| `account` | `view` |

| a table after a table | is not read |
| --- | --- |
| `colour` | `green` |

`colour` is no field of the table: the table below is not read.

| not | read |
| --- | --- |
| `colour` | `red` |

**Answer `200`**

**Answer `200`:** twice, in words.
"""
    assert field_tables(text) == (
        {"Body": ["permissions", "description", "permissions.account"], "Answer 200": []},
        {"Answer 200"},
        ["**Body**: first cell 'description' is not a field name in a code span",
         "**Body**: `description` listed twice",
         "**Answer 200** is not followed by a table",
         "two **Answer 200** labels"])

    spec: dict[str, Any] = {"components": {"schemas": {
        "B": {"properties": {"age": {}, "gender": {}}},
        "D": {"properties": {"version": {}, "descriptor": {}}},
        "F": {"allOf": [{"properties": {"id": {}}}, {"properties": {
            "basic": {"anyOf": [{"nullable": True, "enum": [None]}, {"$ref": "#/components/schemas/B"}]},
            "descriptors": {"type": "array", "items": {"$ref": "#/components/schemas/D"}},
            "either": {"oneOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]}}}]}}}}
    face = {"$ref": "#/components/schemas/F"}
    full = ["id", "basic", "basic.age", "basic.gender", "descriptors", "descriptors[].version",
            "descriptors[].descriptor", "either", "either.a", "either.b"]
    assert table_mismatches(spec, face, full) == []
    assert table_mismatches(spec, face, ["id", "basic", "descriptors", "either"]) == []  # not gone into
    assert table_mismatches(spec, face, ["id", "basic", "basic.age", "basic.colour", "descriptors",
                                         "descriptors[].version", "either", "either.a", "size"]) == [
        "`size` not in the document",
        "`basic.colour` not in the document",
        "`basic.gender` missing from the table",
        "`descriptors[].descriptor` missing from the table",
        "`either.b` missing from the table",
    ]
    assert table_mismatches(spec, face, ["basic", "basic[].age", "either", "descriptors", "x.y"]) == [
        "`id` missing from the table",
        "`basic[]`: not an array in the document",
        "`x.y` without a row for `x`",
    ]


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
