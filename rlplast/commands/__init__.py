"""Thin click commands; each calls into the library and holds no training logic."""
