"""Bundled int8 models (package data). See `edgevision.bundled`."""
