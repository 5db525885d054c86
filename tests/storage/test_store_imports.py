"""app.image_store.backends must stay usable from the API, the workers and the CLI alike."""
from __future__ import annotations

import ast
from pathlib import Path

import app.image_store.backends

FORBIDDEN_ROOTS = {"flask", "flask_smorest", "sqlalchemy", "celery", "tasks", "inference", "matcher"}


def test_storage_imports_nothing_from_the_app_layers() -> None:
    package_dir = Path(app.image_store.backends.__file__).parent
    offenders = []
    for path in sorted(package_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                root = module.split(".")[0]
                if root in FORBIDDEN_ROOTS or (root == "app" and not module.startswith("app.image_store.backends")):
                    offenders.append(f"{path.name}: {module}")
    assert not offenders
    assert {"base.py", "local.py", "s3.py", "cleanup.py"} <= {p.name for p in package_dir.glob("*.py")}
