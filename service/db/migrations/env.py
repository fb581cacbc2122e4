"""Alembic environment: the URL comes from the Config object built in service.db.migrate."""

from alembic import context

from service.db import make_engine
from service.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url is not None, "service.db.migrate sets sqlalchemy.url"
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection, target_metadata=Base.metadata, render_as_batch=connection.dialect.name == "sqlite"
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
