"""Remote SDK tasks on the ``gpu`` queue (``inference.*``), and the batcher that feeds the models.

Batching: a gpu worker runs Celery's ``threads`` pool (``--pool threads --concurrency N``). Each
task thread loads and decodes its request's images, then hands them to the process's one
:class:`Batcher`, whose thread runs the models on everything queued at that moment: up to
``inference_batch_max`` images, waiting at most ``inference_batch_wait_ms`` for more once the
first has arrived. With one request in flight a batch is that request (no added latency beyond
the wait); under load, images of up to N concurrent requests share each forward pass. Every task
keeps its own message, so ``acks_late`` holds per request: a task is acknowledged when its own
answer is ready, and a worker that dies mid-batch has every unacknowledged request redelivered.
The models run only for the batcher thread: on the CPU it splits each batch into shards, one
per core, that run side by side on one torch thread each (``inference.parallel``).

Models are loaded lazily, once per worker process, by ``inference.registry``; which ones may
load follows the ``enable_*`` settings (env ``FACEGATE_ENABLE_<NAME>``, the config file), read
again before each task so a reloaded config applies at once.
"""
from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

from app import settings
from app.dispatch import reported
from app.handlers import processing
from app.scope import Scope
from app.sdk import service as sdk
from inference import analysis, parallel, pipeline, registry
from tasks import celery

log = logging.getLogger(__name__)

# torch's OpenMP worker threads spin while waiting for work. Where the CPU is shared with other
# busy processes (the embedded mode runs API, worker, beat and Flower on one machine) the
# spinning steals the cores the computation needs: on a 2-core machine at a load average of 8-13
# the pipeline took 3-5 s per image spinning and about 0.2 s waiting passively. OpenMP reads
# this when torch loads, which happens later (models load lazily; nothing above imports torch).
# Workers on dedicated machines may set OMP_WAIT_POLICY=ACTIVE in their environment.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

BatchFn = Callable[[list[Any]], list[Any]]


class Batcher:
    """Collects items submitted from many threads and runs each function over its items in batches.

    ``limits()`` gives (max items per batch, max wait in seconds) and is read per batch. Items
    submitted with different functions are batched separately, in arrival order.
    """

    def __init__(self, limits: Callable[[], tuple[int, float]], name: str = "batcher") -> None:
        self.limits = limits
        self.name = name
        self._queue: queue.Queue[tuple[BatchFn, Any, Future]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self.batch_sizes: list[int] = []  # recent batch sizes, for the bench and logs

    def submit(self, fn: BatchFn, item: Any) -> Future:
        self._ensure_thread()
        future: Future = Future()
        self._queue.put((fn, item, future))
        return future

    def run(self, fn: BatchFn, items: list[Any]) -> list[Any]:
        """Submit ``items`` and wait for all their results (re-raising the batch's error)."""
        futures = [self.submit(fn, item) for item in items]
        return [f.result() for f in futures]

    def _ensure_thread(self) -> None:
        # A thread does not survive fork: a prefork child starts its own on first use.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._queue = queue.Queue()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def _collect(self) -> list[tuple[BatchFn, Any, Future]]:
        batch = [self._queue.get()]
        max_items, max_wait = self.limits()
        deadline = time.monotonic() + max_wait
        while len(batch) < max_items:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            groups: dict[BatchFn, list[tuple[Any, Future]]] = {}
            for fn, item, future in batch:
                groups.setdefault(fn, []).append((item, future))
            self.batch_sizes = (self.batch_sizes + [len(batch)])[-1000:]
            for fn, entries in groups.items():
                try:
                    results = fn([item for item, _ in entries])
                except BaseException as exc:  # noqa: BLE001 - handed to every waiting task
                    for _, future in entries:
                        future.set_exception(exc)
                    continue
                for (_, future), result in zip(entries, results):
                    future.set_result(result)


def _limits() -> tuple[int, float]:
    s = settings.current()
    return pipeline.batch_limit(s.inference_batch_max), max(0.0, s.inference_batch_wait_ms) / 1000.0


batcher = Batcher(_limits, "inference-batcher")

_configured: tuple[Any, ...] | None = None
_configure_lock = threading.Lock()


def configure_registry() -> None:
    """Apply the ``enable_*``, device and CPU shard settings when they changed."""
    global _configured
    s = settings.current()
    flags = tuple((name, getattr(s, f"enable_{name}")) for name in registry.ENTRIES)
    wanted = (s.enable_all_estimators_by_default, flags, s.inference_device, s.inference_cpu_shards)
    if wanted == _configured:
        return
    with _configure_lock:
        device = registry.default_device() if s.inference_device == "auto" else s.inference_device
        registry.configure({name: flag for name, flag in flags if flag is not None},
                           default_enabled=s.enable_all_estimators_by_default, device=device)
        parallel.configure(s.inference_cpu_shards)
        _configured = wanted
        log.info("estimators: %s on %s", ", ".join(n for n in registry.ENTRIES if registry.is_enabled(n)) or "none", device)


# A reload (or any settings change) re-applies the estimator switches at once, not at the next task.
settings.on_change(lambda old, new: configure_registry())


def _inference(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a task body with the settings' estimator switches applied; a model that is disabled or
    not installed becomes the API's 403/503."""
    configure_registry()
    try:
        return work()
    except (analysis.Unavailable, registry.EstimatorUnavailable) as exc:  # also when already batched
        raise sdk.unavailable_error(exc) from None


def _analyze_batch(items: list[Any]) -> list[Any]:
    # on the CPU, shards of the batch side by side, one per core (inference.parallel)
    return parallel.run(analysis.analyze, items, [pipeline.cost(image) for image, _ in items], registry.device())


def _iso_batch(items: list[Any]) -> list[Any]:
    # inference.iso checks one image at a time, on the batcher thread like every model call.
    return [analysis.iso_report(image_format, image, thresholds) for image_format, image, thresholds in items]


def _analyzed(owner: Scope, refs: list[dict[str, Any]],
              options: dict[str, Any]) -> tuple[list[tuple[int, int]], list[analysis.Analysis]]:
    """(height, width) and what the models found of each stored image of a request, in the batcher
    with other requests' images; a ref marked ``sample`` is a stored face sample, one aligned face."""
    analysis.require(options)
    with sdk.load_images(owner, refs) as loaded:  # the decode budget holds until the models are done
        found = batcher.run(_analyze_batch, [(image, {**options, "sample": ref.get("sample", False)})
                                             for ref, (_, image) in zip(refs, loaded)])
        return [image.shape[:2] for _, image in loaded], found


def analyze_stored(owner: Scope, refs: list[dict[str, Any]],
                   options: dict[str, Any]) -> tuple[list[tuple[int, int]], list[analysis.Analysis]]:
    """:func:`_analyzed` for long tasks' parts (``app.tasks.runner.Analyzer``), with the settings'
    model switches applied and refusals as the API's errors."""
    return _inference(lambda: _analyzed(owner, refs, options))  # type: ignore[arg-type,return-value]


def analyze_images(items: list[tuple[Any, dict[str, Any]]]) -> list[analysis.Analysis]:
    """Decoded images (each with its options) through the batcher, for long tasks' parts."""
    def work() -> list[analysis.Analysis]:
        for _, options in items:
            analysis.require(options)
        return batcher.run(_analyze_batch, items)

    return _inference(work)  # type: ignore[arg-type,return-value]


@celery.task(name="inference.sdk", acks_late=True, bind=True)
@reported
def sdk_task(self: Any, scope: str, refs: list[dict[str, str]], options: dict[str, Any]) -> dict[str, Any]:
    """Detect, estimate, warp and extract for one /sdk or /detector request."""
    def work() -> dict[str, Any]:
        owner = Scope.from_wire(scope)
        sizes, found = _analyzed(owner, refs, options)
        return sdk.finish(self.request.id, owner, refs, sizes, found, options)

    return _inference(work)


@celery.task(name="inference.handler_detect", acks_late=True, bind=True)
@reported
def handler_detect(self: Any, scope: str, refs: list[dict[str, str]], policies: dict[str, Any],
                   aggregate: bool) -> dict[str, Any]:
    """The gpu step of ``POST /handlers/{id}/events``: what the detect and extract policies ask for."""
    options = processing.detect_options(policies)

    def work() -> dict[str, Any]:
        owner = Scope.from_wire(scope)
        sizes, found = _analyzed(owner, refs, options)
        return processing.detect(self.request.id, owner, refs, policies, aggregate, sizes, found)

    return _inference(work)


@celery.task(name="inference.iso", acks_late=True)
@reported
def iso_task(scope: str, refs: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
    """ISO/IEC 19794-5-style checks of each image of one /iso request."""
    def work() -> dict[str, Any]:
        with sdk.load_images(Scope.from_wire(scope), refs) as loaded:
            reports = batcher.run(_iso_batch, [(fmt, image, params.get("thresholds")) for fmt, image in loaded])
        return {"images": [{"filename": ref["filename"], **report} for ref, report in zip(refs, reports)]}

    return _inference(work)


@celery.task(name="inference.estimators", acks_late=True)
@reported
def estimators_task() -> dict[str, Any]:
    """The estimators of this worker: enabled by its settings, loaded in this process or not."""
    configure_registry()
    max_items, max_wait = _limits()
    recent = batcher.batch_sizes[-100:]
    return {"worker": socket.gethostname(),
            "estimators": [{"name": name, **state} for name, state in registry.availability().items()],
            "batching": {"max_images": max_items, "max_wait_ms": max_wait * 1000, "recent_batches": len(recent),
                         "recent_mean_images": sum(recent) / len(recent) if recent else None}}
