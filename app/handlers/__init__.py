"""Handlers: stored, validated processing policies that events will be generated under."""
