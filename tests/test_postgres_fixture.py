"""The throwaway PostgreSQL server of tests/conftest.py: plain SQL through SQLAlchemy + psycopg 3,
and an Optuna study on RDB storage."""

from __future__ import annotations

import optuna
import sqlalchemy as sa


def test_sqlalchemy_roundtrip(postgres_database: str) -> None:
    assert postgres_database.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    engine = sa.create_engine(postgres_database)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL)"))
            conn.execute(sa.text("INSERT INTO item (name) VALUES (:name)"), {"name": "green"})
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id, name FROM item")).all() == [(1, "green")]
    finally:
        engine.dispose()


def test_optuna_rdb_storage(postgres_database: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(postgres_database)
    try:
        study = optuna.create_study(storage=storage, study_name="x")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        reloaded = optuna.load_study(study_name="x", storage=storage)
        complete = reloaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        assert len(complete) == 3
        assert all(0 <= t.params["x"] <= 1 for t in complete)
    finally:
        storage.remove_session()
        storage.engine.dispose()
