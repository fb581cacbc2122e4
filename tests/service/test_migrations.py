"""The migrations are the schema's only source: on SQLite and PostgreSQL, migrating to head gives
exactly the tables the models declare, and every migration steps down again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.db import make_engine
from service.db.migrate import VERSION_TABLE, alembic_config, ours, upgrade
from service.db.models import Base, Job


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


def test_names_trained_before_owners_were_recorded_belong_to_their_first_trainer(database_url):
    from datetime import UTC, datetime

    from sqlalchemy import text

    command.downgrade(alembic_config(database_url), "0007_models_work")
    engine = make_engine(database_url)
    jobs = [  # (id, kind, owner, model_name, day)
        ("a1", "train", "bob", "digits", 2),
        ("a2", "train", "alice", "digits", 1),  # the first to train under it
        ("a3", "eval", "carol", "cifar", 1),  # an evaluation claims nothing
        ("a4", "train", "dave", "claimed", 1),
    ]
    with engine.begin() as connection:  # the schema of 0007 is the head's: the models' defaults fill the rest
        for job_id, kind, owner, model_name, day in jobs:
            connection.execute(
                Job.__table__.insert().values(
                    id=job_id,
                    kind=kind,
                    name="j",
                    owner=owner,
                    model_name=model_name,
                    spec={},
                    resources={},
                    status="SUCCEEDED",
                    created_at=datetime(2026, 1, day, tzinfo=UTC),
                )
            )
        connection.execute(
            text("INSERT INTO model_owner (name, owner, created_at) VALUES ('claimed', 'erin', :at)"),
            {"at": datetime(2026, 1, 1, tzinfo=UTC)},
        )
    upgrade(database_url)
    with engine.connect() as connection:
        owners = dict(connection.execute(text("SELECT name, owner FROM model_owner")).all())
    engine.dispose()
    assert owners == {"digits": "alice", "claimed": "erin"}


def test_sweeps_names_are_claimed_and_stored_lone_surrogates_replaced(database_url):
    """Sweeps claimed no model name, and a lone surrogate (kept by SQLite's and PostgreSQL's json
    columns alike) broke every answer showing its row."""
    from datetime import UTC, datetime

    from sqlalchemy import select, text

    from service.db.models import Sweep

    command.downgrade(alembic_config(database_url), "0008_earlier_model_owners")
    engine = make_engine(database_url)
    poisoned = {"name": "x", "data": {"data_dir": "a\ud800b", "ok": "\U0001f600"}}
    sweeps = [  # (id, owner, base model name and group, day)
        ("s1", "bob", {"model_name": "swept", "model_group": "lab"}, 2),
        ("s2", "carol", {"model_name": "trial-name"}, 3),  # later than the trial job below
        ("s3", "dave", {}, 1),  # names no model
    ]
    with engine.begin() as connection:
        connection.execute(
            Job.__table__.insert().values(
                id="j1",
                kind="train",
                name="j",
                owner="alice",
                model_name="trial-name",
                spec=poisoned,
                resources={},
                status="SUCCEEDED",
                created_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
        for sweep_id, owner, base, day in sweeps:
            connection.execute(
                Sweep.__table__.insert().values(
                    id=sweep_id,
                    name="s",
                    owner=owner,
                    status="RUNNING",
                    request={"base": {"preset": "digits-ascl", **base}},
                    base_spec=poisoned,
                    study_name=f"ascl-sweep-{sweep_id}",
                    max_trials=4,
                    max_concurrency=2,
                    max_failed_trials=3,
                    created_at=datetime(2026, 1, day, tzinfo=UTC),
                )
            )
    upgrade(database_url)
    with engine.connect() as connection:
        owners = {
            name: (owner, group)
            for name, owner, group in connection.execute(text('SELECT name, owner, "group" FROM model_owner'))
        }
        spec = connection.execute(select(Job.spec)).scalar_one()
        base_spec = connection.execute(select(Sweep.base_spec).where(Sweep.id == "s1")).scalar_one()
    engine.dispose()
    assert owners == {"swept": ("bob", "lab"), "trial-name": ("alice", None)}
    expected = {"name": "x", "data": {"data_dir": "a\ufffdb", "ok": "\U0001f600"}}
    assert spec == base_spec == expected
