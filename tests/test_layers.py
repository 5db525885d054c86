"""Who may import whom: the layering the architecture relies on (docs/architecture.md).

- ``app/`` sends tasks by name through ``app.dispatch`` and never imports ``tasks/``;
- ``inference/`` and ``matcher/`` know nothing of Flask, the database, Celery or the app, so they
  run in any process and can be benchmarked and tested alone;
- the image store back-ends (``app/image_store/backends``) are usable from the API, the workers and
  the CLI alike: nothing from the app layers or the web framework.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB_AND_DB = {"flask", "flask_smorest", "webargs", "marshmallow", "sqlalchemy", "alembic", "celery", "kombu"}
RULES: dict[str, set[str]] = {
    "app": {"tasks"},
    "inference": WEB_AND_DB | {"app", "tasks", "matcher"},
    "matcher": WEB_AND_DB | {"app", "tasks"},
    "app/image_store/backends": WEB_AND_DB | {"tasks", "inference", "matcher", "app"},
}
ALLOWED_WITHIN = {"app/image_store/backends": "app.image_store.backends"}


def imports(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.append(node.module or "")
    return modules


def offenders(folder: str, forbidden: set[str], root: Path = ROOT) -> list[str]:
    own = ALLOWED_WITHIN.get(folder)
    found = []
    for path in sorted((root / folder).rglob("*.py")):
        for module in imports(path):
            if own and (module == own or module.startswith(own + ".")):
                continue
            if module.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(root)}: {module}")
    return found


@pytest.mark.parametrize("folder", sorted(RULES))
def test_layer_imports(folder):
    assert (ROOT / folder).is_dir()
    assert offenders(folder, RULES[folder]) == []


def test_the_rule_can_fail(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "leak.py").write_text("from tasks import celery\nimport tasks.inference\n")
    assert offenders("app", RULES["app"], tmp_path) == ["app/leak.py: tasks", "app/leak.py: tasks.inference"]
