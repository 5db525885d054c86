"""Faces with descriptors, lists of faces, and the change feed the matcher follows."""
