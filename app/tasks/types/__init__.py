"""The task types: importing this package registers every one (``app.tasks.registry``)."""
import app.tasks.types.additional_extract  # noqa: F401
import app.tasks.types.clustering  # noqa: F401
import app.tasks.types.cross_match  # noqa: F401
import app.tasks.types.estimator  # noqa: F401
import app.tasks.types.exporter  # noqa: F401
import app.tasks.types.gc  # noqa: F401
import app.tasks.types.linker  # noqa: F401
import app.tasks.types.reporter  # noqa: F401
import app.tasks.types.roc  # noqa: F401
