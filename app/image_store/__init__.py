"""The image store: images, objects, face and body samples, buckets, TTLs, back-ends."""
