"""Storage adapter: SQLAlchemy models, Alembic migrations, repository functions, audit log.

>>> from alliance.store import Database, upgrade
>>> db = Database("sqlite:///:memory:")  # doctest: +SKIP
"""

from alliance.store.db import Database, default_database_url, make_engine, sqlite_url
from alliance.store.migrate import upgrade

__all__ = ["Database", "default_database_url", "make_engine", "sqlite_url", "upgrade"]
