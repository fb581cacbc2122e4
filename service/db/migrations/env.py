"""Alembic environment: the URL comes from the Config object built in service.db.migrate. Only our
own tables are compared and migrated: Optuna's tables share the database (see migrate.py)."""

from alembic import context

from service.db import make_engine
from service.db.migrate import VERSION_TABLE, ours
from service.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url is not None, "service.db.migrate sets sqlalchemy.url"


engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        version_table=VERSION_TABLE,
        include_object=ours,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
