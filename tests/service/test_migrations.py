"""The migrations are the schema's only source: on SQLite and PostgreSQL, migrating to head gives
exactly the tables the models declare, and every migration steps down again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.db import make_engine
from service.db.migrate import VERSION_TABLE, alembic_config, ours, upgrade
from service.db.models import Base


def _differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_object": ours, "version_table": VERSION_TABLE}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_head_matches_the_models(database_url):
    assert _differences(database_url) == []


def test_every_migration_steps_down_and_up_again(database_url):
    command.downgrade(alembic_config(database_url), "base")
    upgrade(database_url)
    assert _differences(database_url) == []


def test_an_optuna_study_shares_the_database_and_both_keep_migrating(database_url):
    import optuna

    storage = optuna.storages.RDBStorage(database_url)
    optuna.create_study(storage=storage, study_name="shared").tell(
        optuna.create_study(storage=storage, study_name="shared", load_if_exists=True).ask(), 1.0
    )
    storage.engine.dispose()
    upgrade(database_url)  # ours ignores Optuna's tables and its alembic_version
    assert _differences(database_url) == []
    again = optuna.storages.RDBStorage(database_url)  # and Optuna still reads its own schema version
    assert [t.value for t in optuna.load_study(study_name="shared", storage=again).trials] == [1.0]
    again.engine.dispose()


def test_a_database_migrated_before_the_version_table_was_renamed_is_carried_over(database_url):
    from sqlalchemy import text

    engine = make_engine(database_url)
    with engine.connect() as connection:
        head = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
    command.downgrade(alembic_config(database_url), "0004")
    with engine.begin() as connection:  # what an older release left: revision 0004 in alembic_version
        connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        connection.execute(text("INSERT INTO alembic_version VALUES ('0004')"))
    upgrade(database_url)
    with engine.connect() as connection:
        assert connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one() == head
        assert connection.execute(text("SELECT COUNT(*) FROM alembic_version")).scalar_one() == 0
    engine.dispose()
