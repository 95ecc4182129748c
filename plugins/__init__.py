"""Builtin plugins, one package each, each with its own manifest."""
