"""Typed records and specs shared by every layer (pydantic v2). No I/O here."""
