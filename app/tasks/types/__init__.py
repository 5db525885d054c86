"""The task types: importing this package registers every one (``app.tasks.registry``)."""
from app.tasks.types import clustering  # noqa: F401
