"""/objects: any bytes (JSON, zip, text, pdf, ...) kept with the Content-Type they were sent with."""
from __future__ import annotations

from app.resources.store_common import store_blueprint

blp = store_blueprint("object", "/objects", "Objects of any type (image store)")
