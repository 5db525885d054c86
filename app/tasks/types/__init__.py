"""The task types: importing this package registers every one (``app.tasks.registry``)."""
