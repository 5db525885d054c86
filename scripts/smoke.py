#!/usr/bin/env python3
"""Smoke test of a running platform: account, token, authenticated call, a task through a worker,
and that task seen by Flower. Exits non-zero on the first failure.

    FACEGATE_URL=http://127.0.0.1:5000 FLOWER_URL=http://127.0.0.1:5555 [FLOWER_AUTH=user:pass] make smoke

Flower always asks for credentials: FLOWER_AUTH, else the ones `make run` generated into
``<data_dir>/flower.auth`` (FACEGATE_DATA_DIR, default ``var/``).

With ``--sdk-clients N --duration S`` it then keeps N clients calling ``POST /sdk`` (detection,
descriptor, basic attributes) for S seconds and fails on any error or any worker that restarted
meanwhile (its pid, as Flower reports it, changed); the summary is one JSON line:

    .venv/bin/python scripts/smoke.py --sdk-clients 8 --duration 600
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path

import requests
import simple_websocket

API = os.environ.get("FACEGATE_URL", "http://127.0.0.1:5000").rstrip("/")
FLOWER = os.environ.get("FLOWER_URL", "http://127.0.0.1:5555").rstrip("/")


def flower_auth() -> tuple[str, str] | None:
    """FLOWER_AUTH (user:password), else the credentials embedded mode generated into
    <data_dir>/flower.auth (data_dir: FACEGATE_DATA_DIR, default <repo>/var)."""
    value = os.environ.get("FLOWER_AUTH", "")
    if not value:
        data_dir = Path(os.environ.get("FACEGATE_DATA_DIR") or Path(__file__).resolve().parents[1] / "var")
        try:
            value = (data_dir / "flower.auth").read_text().strip()
        except OSError:
            return None
    user, sep, password = value.partition(":")
    return (user, password) if sep else None


FLOWER_AUTH = flower_auth()


def step(name: str, ok: bool, detail: object = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail if not ok else ''}".rstrip())
    if not ok:
        sys.exit(1)


def main() -> dict[str, str]:
    r = requests.get(f"{API}/healthcheck", timeout=10)
    step("healthcheck", r.status_code == 200, r.text)
    login, password = f"smoke-{uuid.uuid4().hex[:8]}@example.com", "smoke-password"
    r = requests.post(f"{API}/accounts", json={"login": login, "password": password}, timeout=10)
    step("create account", r.status_code == 201, r.text)
    account_id = r.json()["account_id"]
    r = requests.post(f"{API}/tokens", auth=(login, password), timeout=10,
                      json={"permissions": {"account": ["view"], "task": ["creation"], "sdk": ["creation"]},
                            "description": "smoke"})
    step("create token", r.status_code == 201, r.text)
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    r = requests.get(f"{API}/accounts/{account_id}", headers=headers, timeout=10)
    step("authenticated call with the token", r.status_code == 200 and r.json()["login"] == login, r.text)
    r = requests.post(f"{API}/system/ping", headers=headers, timeout=60)
    step("task through the worker", r.status_code == 200 and r.json()["result"]["pong"] is True, r.text)
    task_id = r.json()["task_id"]
    f = requests.get(f"{FLOWER}/api/task/info/{task_id}", timeout=10)
    step("Flower refuses a caller without credentials", f.status_code == 401, f.status_code)
    step("Flower credentials known (FLOWER_AUTH or <data_dir>/flower.auth)", FLOWER_AUTH is not None)
    deadline, info = time.time() + 30, None
    while time.time() < deadline:
        f = requests.get(f"{FLOWER}/api/task/info/{task_id}", auth=FLOWER_AUTH, timeout=10)
        if f.status_code == 200 and f.json().get("state") == "SUCCESS":
            info = f.json()
            break
        time.sleep(1)
    step("Flower shows the task", info is not None and info.get("name") == "system.ping", info)
    image = default_image()
    if image is not None:
        handler_events(login, password, image)
        long_task(login, password, image)
    print(f"smoke passed against {API} (task {task_id})")
    return headers


def handler_events(login: str, password: str, image: Path) -> None:
    """A handler with a websocket callback: the event comes back in the answer, from /events and
    over /ws (through the relay, Redis pub/sub and the API's hub)."""
    auth = (login, password)
    r = requests.post(f"{API}/handlers", auth=auth, timeout=10, json={"policies": {
        "extract_policy": {"extract_face_descriptor": True}, "callbacks": [{"type": "luna-ws-notification"}]}})
    step("create handler", r.status_code == 201, r.text)
    handler_id = r.json()["handler_id"]
    basic = "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()
    ws = simple_websocket.Client(f"{API.replace('http', 'ws', 1)}/ws?handler_ids={handler_id}",
                                 headers={"Authorization": basic})
    try:
        r = requests.post(f"{API}/handlers/{handler_id}/events", auth=auth, timeout=120, data=image.read_bytes(),
                          headers={"Content-Type": "image/jpeg"})
        step("event from an image (detect, extract, save)", r.status_code == 201 and
             len(r.json()["events"][0]["detections"]) >= 1, r.text[:300])
        event_id = r.json()["events"][0]["event_id"]
        r = requests.get(f"{API}/events/{event_id}", auth=auth, timeout=10)
        step("the event is stored", r.status_code == 200, r.text[:300])
        message = ws.receive(timeout=30)
        step("the event reaches a websocket subscriber", message is not None and
             json.loads(message)["event"]["event_id"] == event_id, message)
    finally:
        ws.close()


def long_task(login: str, password: str, image: Path) -> None:
    """An estimator task over a ZIP archive in the image store: split, a part on the gpu queue,
    the merge, the result; and its steps seen by Flower under ids derived from the task id."""
    auth = (login, password)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("one.jpg", image.read_bytes())
        z.writestr("notes.txt", b"not an image")
    r = requests.post(f"{API}/objects", auth=auth, timeout=10, data=archive.getvalue(),
                      headers={"Content-Type": "application/zip"})
    step("archive stored as an object", r.status_code == 201, r.text)
    body = {"content": {"handler": {"policies": {"extract_policy": {"extract_face_descriptor": True}}},
                        "source": {"type": "zip", "object_id": r.json()["object_id"]}}}
    r = requests.post(f"{API}/tasks/estimator", auth=auth, timeout=10, json=body)
    step("estimator task created", r.status_code == 201, r.text)
    task_id = r.json()["task_id"]
    deadline = time.monotonic() + 180
    while True:
        task = requests.get(f"{API}/tasks/{task_id}", auth=auth, timeout=10).json()
        if task["status"] in (2, 3, 5) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    step("the task is done", task["status"] == 5 and task["parts_done"] == task["parts_total"], task)
    result = requests.get(f"{API}/tasks/{task_id}/result", auth=auth, timeout=10).json()
    statuses = {entry["filename"]: entry["status"] for entry in result["result"]}
    step("its result: the photo's event, the text file an error",
         statuses == {"one.jpg": "success", "notes.txt": "error"}, statuses)
    r = requests.get(f"{FLOWER}/api/task/info/task-{task_id}-split", auth=FLOWER_AUTH, timeout=30)
    step("Flower shows the task's split", r.status_code == 200 and r.json().get("name") == "jobs.split", r.text[:300])


def worker_pids() -> dict[str, int]:
    """{worker hostname: pid} as Flower sees the workers now."""
    r = requests.get(f"{FLOWER}/api/workers", params={"refresh": "true"}, auth=FLOWER_AUTH, timeout=30)
    r.raise_for_status()
    return {name: info.get("stats", {}).get("pid") for name, info in r.json().items()
            if isinstance(info, dict) and info.get("stats")}


def default_image() -> Path | None:
    shared = Path(os.environ.get("FACEGATE_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
    path = shared / "faces" / "lfw" / "Colin_Powell" / "Colin_Powell_0001.jpg"
    return path if path.exists() else None


def soak(headers: dict[str, str], clients: int, duration: float, image: Path | None) -> bool:
    if image is not None:
        body = image.read_bytes()
    else:  # no test photo at hand: a plain picture still goes through decoding and detection
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (250, 250), (128, 110, 90)).save(buf, "JPEG")
        body = buf.getvalue()
    before = worker_pids()
    step("workers seen by Flower", bool(before), before)
    params = {"extract_descriptor": 1, "estimate_basic_attributes": 1}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def client() -> None:
        session = requests.Session()
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                r = session.post(f"{API}/sdk", params=params, data=body, timeout=120,
                                 headers={**headers, "Content-Type": "image/jpeg"})
                ok = r.status_code == 200 and "images" in r.json()
                problem = None if ok else f"{r.status_code} {r.text[:200]}"
            except (requests.RequestException, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            with lock:
                if problem is None:
                    latencies.append(time.monotonic() - started)
                else:
                    errors.append(problem)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    after = worker_pids()
    restarted = sorted(name for name, pid in before.items() if after.get(name) != pid)
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else 0.0

    summary = {"clients": clients, "duration_s": round(elapsed, 1), "requests": len(latencies) + len(errors),
               "errors": len(errors), "first_errors": errors[:5], "req_per_s": round(len(latencies) / elapsed, 2),
               "p50_ms": pct(0.5), "p95_ms": pct(0.95), "max_ms": pct(1.0),
               "worker_restarts": restarted, "workers_before": before, "workers_after": after}
    print(json.dumps(summary))
    return not errors and not restarted


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdk-clients", type=int, default=0, help="concurrent /sdk clients after the smoke test")
    parser.add_argument("--duration", type=float, default=600, help="seconds the /sdk clients run")
    parser.add_argument("--image", type=Path, default=None, help="JPEG to send (default: a shared LFW photo)")
    args = parser.parse_args()
    token_headers = main()
    if args.sdk_clients > 0:
        ok = soak(token_headers, args.sdk_clients, args.duration, args.image or default_image())
        step(f"{args.sdk_clients} clients on /sdk for {args.duration:g} s: no errors, no worker restarts", ok)
