"""Shipped trainer configs (YAML); a package so that the wheel carries them."""
