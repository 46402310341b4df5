"""Verification: is a found secret live? Specs are data (spec.py); requests are async (engine.py)."""
