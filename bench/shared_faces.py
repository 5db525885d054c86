"""The shared face photos the inference benches run on, with nothing heavier than the standard
library imported: ``bench/gpu.py`` runs on device machines that lack the platform's packages."""
from __future__ import annotations

import csv
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FACEGATE_SHARED_DIR", ROOT.parent / "shared"))
FACES = SHARED / "faces"


def bench_paths(count: int) -> list[Path]:
    """``count`` face photos spread evenly over MANIFEST.csv's sorted paths (LFW crops, group photos
    and large photos alike; the body and no-face folders left out)."""
    with open(FACES / "MANIFEST.csv") as fh:
        paths = sorted(r["path"] for r in csv.DictReader(fh) if not r["path"].startswith(("bodies/", "noface/")))
    step = len(paths) / count
    return [FACES / paths[int(i * step)] for i in range(count)]
