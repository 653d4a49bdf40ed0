"""The hub's fixtures: a real PostgreSQL server (tests/hub/postgres.py)."""
from postgres import postgres_server, postgres_url  # noqa: F401
