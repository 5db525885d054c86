#!/usr/bin/env python3
"""Smoke test of a running platform: account, token, authenticated call, a task through a worker,
and that task seen by Flower. Exits non-zero on the first failure.

    FACEGATE_URL=http://127.0.0.1:5000 FLOWER_URL=http://127.0.0.1:5555 [FLOWER_AUTH=user:pass] make smoke
"""
from __future__ import annotations

import os
import sys
import time
import uuid

import requests

API = os.environ.get("FACEGATE_URL", "http://127.0.0.1:5000").rstrip("/")
FLOWER = os.environ.get("FLOWER_URL", "http://127.0.0.1:5555").rstrip("/")
FLOWER_AUTH = tuple(os.environ["FLOWER_AUTH"].split(":", 1)) if os.environ.get("FLOWER_AUTH") else None


def step(name: str, ok: bool, detail: object = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail if not ok else ''}".rstrip())
    if not ok:
        sys.exit(1)


def main() -> None:
    r = requests.get(f"{API}/healthcheck", timeout=10)
    step("healthcheck", r.status_code == 200, r.text)
    login, password = f"smoke-{uuid.uuid4().hex[:8]}@example.com", "smoke-password"
    r = requests.post(f"{API}/accounts", json={"login": login, "password": password}, timeout=10)
    step("create account", r.status_code == 201, r.text)
    account_id = r.json()["account_id"]
    r = requests.post(f"{API}/tokens", auth=(login, password), timeout=10,
                      json={"permissions": {"account": ["view"], "task": ["creation"]}, "description": "smoke"})
    step("create token", r.status_code == 201, r.text)
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    r = requests.get(f"{API}/accounts/{account_id}", headers=headers, timeout=10)
    step("authenticated call with the token", r.status_code == 200 and r.json()["login"] == login, r.text)
    r = requests.post(f"{API}/system/ping", headers=headers, timeout=60)
    step("task through the worker", r.status_code == 200 and r.json()["result"]["pong"] is True, r.text)
    task_id = r.json()["task_id"]
    deadline, info = time.time() + 30, None
    while time.time() < deadline:
        f = requests.get(f"{FLOWER}/api/task/info/{task_id}", auth=FLOWER_AUTH, timeout=10)
        if f.status_code == 200 and f.json().get("state") == "SUCCESS":
            info = f.json()
            break
        time.sleep(1)
    step("Flower shows the task", info is not None and info.get("name") == "system.ping", info)
    print(f"smoke passed against {API} (task {task_id})")


if __name__ == "__main__":
    main()
