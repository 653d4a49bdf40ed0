"""Packaged model files (the linear agent's default weights)."""
