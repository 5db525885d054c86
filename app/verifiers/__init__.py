"""Verifiers: stored 1:1 verification policies and verifications under them."""
