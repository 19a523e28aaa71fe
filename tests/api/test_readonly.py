"""``clusterd.daemon.readonly``: never writes, never migrates, refuses what it cannot read;
and ``client.toml_text`` (how a dict becomes a sweep file) round-trips through tomllib."""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.client import toml_text
from clusterd.daemon import db
from clusterd.daemon.readonly import Reader
from clusterd.errors import InvalidRequest, StorageError


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ro") / "clusterd.db"
    engine = db.make_engine(f"sqlite:///{path}", allow_new=True)
    db.upgrade(engine)
    engine.dispose()
    return path


def test_an_empty_database_reads_as_no_sweeps_and_is_left_as_it_was(database: Path) -> None:
    before = database.read_bytes(), database.stat().st_mtime_ns
    with Reader(f"sqlite:///{database}") as reader, pytest.warns(UserWarning, match="read-only"):
        assert reader.call("sweeps") == []
    assert (database.read_bytes(), database.stat().st_mtime_ns) == before


def test_ops_that_write_are_refused_with_what_can_be_read(database: Path) -> None:
    with Reader(f"sqlite:///{database}") as reader, pytest.raises(InvalidRequest) as err:
        reader.call("rm", sweep="x")
    assert "'rm' needs the daemon" in err.value.message and "export" in err.value.message


def test_a_database_at_another_revision_is_refused_not_upgraded(
    database: Path, tmp_path: Path
) -> None:
    other = tmp_path / "newer.db"
    other.write_bytes(database.read_bytes())
    with sqlite3.connect(other) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    before = other.read_bytes()
    with pytest.raises(StorageError) as err:
        Reader(f"sqlite:///{other}")
    assert "schema revision 9999" in err.value.message
    assert "`clusterd start`" in err.value.message
    assert other.read_bytes() == before


def test_a_missing_database_is_named(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no clusterd database at"):
        Reader(f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()


keys = st.text(min_size=1, max_size=8)
scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(keys, values, max_size=6))
def test_toml_text_round_trips(spec: dict[str, object]) -> None:
    assert tomllib.loads(toml_text(spec)) == spec
