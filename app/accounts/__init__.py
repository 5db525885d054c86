"""Accounts and their JWT tokens: registration, password checks, permissions, signing."""
