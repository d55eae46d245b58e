"""The local SQLite tracking store (``sqlite:///mlflow.db``): made whole or not at all.

MLflow makes a new SQLite store in place: it creates the tables and then runs some fifty schema
migrations, which SQLite cannot roll back. A process killed part-way (a ``kill -9``, a Slurm time
limit, a SIGTERM before the handlers were in place) left a half-made store that every later stage
failed to open (``table _alembic_tmp_experiments already exists``), so all tracking was lost.

:func:`ensure_store`, called under the store's lock before MLflow opens the file:

* an absent (or empty) store is made under a temporary name in the same folder
  (``.mlflow.db.creating-<pid>``) and renamed onto its name only when complete: a kill at any moment
  leaves no store (and a temporary that the next first use removes) or a complete one;
* a half-made store that an earlier version left (:func:`store_problems`: leftover
  ``_alembic_tmp_*`` tables, no schema version, missing tables) is moved aside
  (``mlflow.db.broken-<time>``) and made anew when it holds no runs, nothing being lost; one that
  holds runs is left untouched and :class:`StoreError` says how to fix it.

Imports MLflow (only :mod:`sindiffusion.tracking` uses it).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

#: The suffixes of the files SQLite keeps beside a database while writing it (rollback journal,
#: write-ahead log): they belong to that file, and move or go with it.
SIDE_FILES = ("-journal", "-wal", "-shm")
#: The tables MLflow's migrations create under a temporary name and rename when done.
LEFTOVER_PREFIX = "_alembic_tmp_"


class StoreError(RuntimeError):
    """A store that cannot be used or repaired safely; the message names the file and the fix."""


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` tracking URI (``None`` for any other URI)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


def expected_tables() -> set[str]:
    """Every table of the installed MLflow's schema."""
    # why: mlflow is heavy (seconds to import); only a tracked run needs it
    import mlflow.store.tracking.dbmodels.models  # noqa: F401  (registers the tables on Base)

    # why: mlflow is heavy (seconds to import); only a tracked run needs it
    from mlflow.store.db.base_sql_model import Base

    return set(Base.metadata.tables)


def store_problems(db: Path, expected: set[str]) -> tuple[list[str], int]:
    """``(what is wrong, number of runs)`` of the store ``db``; no problems = complete (``expected``:
    :func:`expected_tables`; a newer MLflow's extra tables are fine). A file without any table is
    ``(["no tables"], 0)``. Raises :class:`StoreError` for a file that is not an SQLite database."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = con.execute("SELECT * FROM alembic_version").fetchall() if "alembic_version" in tables else []
            runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        raise StoreError(
            f"{db}: not a readable SQLite tracking store ({err}); move it aside (mv {db} {db}.broken) and "
            "the next stage makes a new one"
        ) from err
    if not tables:
        return ["no tables"], 0
    problems = [f"leftover table {t}" for t in sorted(tables) if t.startswith(LEFTOVER_PREFIX)]
    if not version:
        problems.append("no schema version (alembic_version)")
    missing = sorted(expected - tables)
    if missing:
        more = ", ..." if len(missing) > 3 else ""
        problems.append(f"{len(missing)} missing tables ({', '.join(missing[:3])}{more})")
    return problems, int(runs)


def ensure_store(db: Path) -> str | None:
    """Make sure ``db`` is a complete store (see the module docstring); the caller holds the store's
    lock. Returns a warning to show when a half-made store was moved aside, else ``None``."""
    db.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_creations(db)
    note = None
    if db.exists() and db.stat().st_size > 0:
        expected = expected_tables()
        problems, runs = store_problems(db, expected)
        if not problems:
            return None
        if problems != ["no tables"]:
            what = "; ".join(problems)
            if runs:
                raise StoreError(
                    f"{db}: a half-made MLflow store ({what}): a first use or an upgrade was interrupted. It "
                    f"holds {runs} runs, so it is left as it is: move it aside (mv {db} {db}.broken) and the "
                    f"next stage makes a new store, or repair it (drop the {LEFTOVER_PREFIX}* tables, then "
                    f"`mlflow db upgrade sqlite:///{db}`)"
                )
            aside = db.with_name(f"{db.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            _move_with_side_files(db, aside)
            note = (
                f"{db}: a half-made MLflow store ({what}), left by an interrupted first use; it held no runs, so "
                f"it was moved aside to {aside} (delete it when you like) and a new store is made"
            )
    _create(db)
    return note


def _create(db: Path) -> None:
    """Make the store under a temporary name beside ``db`` and rename it onto ``db`` once complete."""
    tmp = db.with_name(f".{db.name}.creating-{os.getpid()}")
    _remove(tmp)
    uri = f"sqlite:///{tmp}"
    try:
        _open_store(uri)
        _forget_engines(tmp)
        problems, _ = store_problems(tmp, expected_tables())
        if problems:  # never put an incomplete store in place
            raise StoreError(f"{db}: MLflow made an incomplete store ({'; '.join(problems)})")
        for suffix in SIDE_FILES:  # a stale journal beside the new name would be played into it
            _remove(Path(f"{db}{suffix}"))
        os.replace(tmp, db)
    except BaseException:
        _remove(tmp)
        raise


def _open_store(uri: str) -> object:
    """MLflow's SQL store for ``uri`` as MLflow itself makes it (creating its tables and migrating them)."""
    try:
        # why: mlflow is heavy (seconds to import); only a tracked run needs it
        from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store
    except ImportError:  # a private helper that a later MLflow may move: the store class is public
        # why: mlflow is heavy (seconds to import); only a tracked run needs it
        from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        return SqlAlchemyStore(uri, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
    return _get_sqlalchemy_store(uri, None)


def _forget_engines(db: Path) -> None:
    """Close MLflow's cached connections to the file ``db`` (under any URI that names it): a store
    moved aside, or the temporary name that is never opened again, must not be written on."""
    # why: mlflow is heavy (seconds to import); only a tracked run needs it
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engines = getattr(SqlAlchemyStore, "_engine_map", {})
    for uri in list(engines):
        path = sqlite_path(uri)
        if path is not None and path.resolve() == db.resolve():
            engines.pop(uri).dispose()


def _move_with_side_files(db: Path, dest: Path) -> None:
    for suffix in SIDE_FILES:
        side = Path(f"{db}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{dest}{suffix}"))
    os.replace(db, dest)
    _forget_engines(db)  # connections opened on db now lead to the moved file


def _remove_stale_creations(db: Path) -> None:
    """Temporaries of creations that a kill interrupted (the lock is held: no creation runs now)."""
    prefix = f".{db.name}.creating-"
    for path in db.parent.glob(f"{prefix}*"):
        _remove(path)


def _remove(path: Path) -> None:
    for p in (path, *(Path(f"{path}{s}") for s in SIDE_FILES)):
        p.unlink(missing_ok=True)
