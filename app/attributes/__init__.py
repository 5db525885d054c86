"""Temporary attributes: descriptors, basic attributes and sample ids kept for a TTL."""
