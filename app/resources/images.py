"""/images: source images, stored as JPEG (EXIF-upright, RGB), with optional thumbnails."""
from __future__ import annotations

from app.resources.store_common import store_blueprint

blp = store_blueprint("image", "/images", "Source images (image store)")
