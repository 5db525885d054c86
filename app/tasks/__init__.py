"""Long tasks: clustering, reporter, exporter, cross-matching, linker, garbage collection,
re-extraction, ROC and the estimator, with cron schedules (docs/tasks.md).

``registry`` (one entry per type, the types in ``types/``), ``runner`` (split, parts, merge on the
workers), ``service`` and ``api`` (the REST side), ``schedules``, ``secrets`` and ``notify``.
"""
