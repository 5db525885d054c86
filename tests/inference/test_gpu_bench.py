"""bench/gpu.py, the one-command device check, must also pass where there is no CUDA (CI): it runs
the CPU rows, the device path on the CPU for parity, and the CPU matcher, and says so."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bench_runs_its_cpu_rows_and_reports_parity() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--images", "12", "--rounds", "1",
                          "--rows", "20000", "--queries", "50"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["bench"] == "gpu" and result["cuda"] is torch.cuda.is_available()
    assert result["cpu"]["images_per_s"] > 0
    assert set(result["cpu"]["stage_ms"]) == {"detect", "landmarks", "warp", "descriptor"}
    parity = result["parity"]
    assert parity["images"] == 12 and parity["face_counts_differ"] == 0
    assert parity["box_max_px"] <= 0.5 and parity["descriptor_max_l2"] <= 0.01
    assert result["matcher"]["cpu"]["queries_per_s"] > 0
