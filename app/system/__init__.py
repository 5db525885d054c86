"""Version, health, effective configuration and the worker round trip."""
