"""1:N matching of references against faces or descriptors, and the matcher workers' list cache."""
