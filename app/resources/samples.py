"""/samples/faces and /samples/bodies: face and body samples, stored as JPEG."""
from __future__ import annotations

from app.resources.store_common import store_blueprint

faces_blp = store_blueprint("face_sample", "/samples/faces", "Face samples (image store)")
bodies_blp = store_blueprint("body_sample", "/samples/bodies", "Body samples (image store)")
