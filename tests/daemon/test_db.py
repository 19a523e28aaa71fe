"""Opening, upgrading and transacting on SQLite; the network-filesystem check."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from clusterd.daemon import db, fscheck, models
from clusterd.errors import NetworkFilesystem, StorageError

Snapshot = Callable[[Engine], dict[str, dict[str, Any]]]

# --------------------------------------------------------------------------- schema


def test_upgrade_creates_every_table_of_the_models(engine: Engine) -> None:
    insp = inspect(engine)
    tables = set(insp.get_table_names()) - {"alembic_version"}
    assert tables == set(models.Base.metadata.tables)
    for name, table in models.Base.metadata.tables.items():
        columns = {c["name"]: c["nullable"] for c in insp.get_columns(name)}
        assert columns == {c.name: c.nullable for c in table.columns}, name


def test_migration_and_models_build_the_same_schema(
    engine: Engine, make_sqlite_engine: Callable[..., Engine], tmp_path: Path, snapshot: Snapshot
) -> None:
    reference = make_sqlite_engine(f"sqlite:///{tmp_path / 'create_all.db'}")
    models.Base.metadata.create_all(reference)
    assert snapshot(engine) == snapshot(reference)


def test_autogenerate_finds_no_difference(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, models.Base.metadata) == []


def test_upgrade_is_idempotent(engine: Engine, snapshot: Snapshot) -> None:
    before = snapshot(engine)
    db.upgrade(engine)
    db.upgrade(engine)
    assert snapshot(engine) == before
    assert db.current_revision(engine) == db.head_revision() == "0005"


def test_revision_files_follow_the_naming_convention() -> None:
    """``versions/NNNN_slug.py`` holds revision NNNN, revising the file before it."""
    script = ScriptDirectory.from_config(db._alembic_config())
    revisions = sorted(script.walk_revisions(), key=lambda rev: rev.revision)
    previous = None
    for rev in revisions:
        assert rev.path is not None and Path(rev.path).name.startswith(rev.revision + "_")
        assert rev.down_revision == previous
        previous = rev.revision
    assert db.newest_revision_file() == db.head_revision() == previous


def test_upgrade_at_head_does_not_import_alembic(engine: Engine, sqlite_url: str) -> None:
    """The daemon upgrades at every start: the up-to-date case must stay cheap."""
    code = (
        "import sys; from clusterd.daemon import db; "
        f"e = db.make_engine({sqlite_url!r}); db.upgrade(e); "
        "assert 'alembic' not in sys.modules, 'alembic imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(db.__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_new_database_has_no_revision(make_sqlite_engine: Callable[..., Engine]) -> None:
    assert db.current_revision(make_sqlite_engine()) is None


def test_downgrade_then_upgrade_round_trips(engine: Engine, snapshot: Snapshot) -> None:
    before = snapshot(engine)
    with db.transaction(engine) as conn:
        command.downgrade(db._alembic_config(conn), "base")
    assert snapshot(engine) == {}
    db.upgrade(engine)
    assert snapshot(engine) == before


def test_database_from_a_newer_clusterd_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StorageError, match=r"revision 9999.*newer clusterd"):
        db.upgrade(engine)


def test_env_py_without_a_shared_connection_uses_the_url(tmp_path: Path) -> None:
    """``alembic`` run by hand: env.py opens the URL itself (through make_engine)."""
    url = f"sqlite:///{tmp_path / 'by-hand.db'}"
    config = db._alembic_config()
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")
    engine = db.make_engine(url)
    try:
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()


def test_offline_mode_prints_the_ddl() -> None:
    config = db._alembic_config()
    config.set_main_option("sqlalchemy.url", "postgresql+psycopg://u@h/db")
    out = io.StringIO()
    config.stdout = out
    with redirect_stdout(out):
        command.upgrade(config, "head", sql=True)
    assert "CREATE TABLE sweeps" in out.getvalue()
    assert "CREATE INDEX ix_metrics_trial_name_step" in out.getvalue()


def test_migrations_ship_as_packages() -> None:
    """A non-editable install only ships packages: migrations and versions must be ones."""
    from setuptools import find_packages

    root = Path(db.__file__).resolve().parents[2]
    found = find_packages(where=str(root), include=["clusterd*"])
    assert {"clusterd.migrations", "clusterd.migrations.versions"} <= set(found)


# --------------------------------------------------------------------------- engine


def test_sqlite_pragmas_on_every_connection(engine: Engine) -> None:
    with engine.connect() as a, engine.connect() as b:
        for conn in (a, b):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_database_file_is_private(engine: Engine, sqlite_url: str) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for extra in path.parent.glob("clusterd.db-*"):  # -wal, -shm
        assert stat.S_IMODE(extra.stat().st_mode) == 0o600


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "loose.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    db.make_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_foreign_keys_cascade(engine: Engine) -> None:
    with db.transaction(engine) as conn:
        conn.execute(
            insert(models.Sweep).values(
                id=1,
                name="s",
                driver="local",
                state="active",
                spec={},
                source="s.toml",
                output_dir="runs/s",
                created_at=0.0,
                updated_at=0.0,
            )
        )
        conn.execute(
            insert(models.Trial).values(
                id=1,
                sweep_id=1,
                index=0,
                params={},
                params_key="{}",
                state="pending",
                attempts=0,
                failures=0,
                resumes=0,
                created_at=0.0,
                updated_at=0.0,
            )
        )
    with db.transaction(engine) as conn:
        conn.execute(text("DELETE FROM sweeps WHERE id = 1"))
        assert conn.execute(text("SELECT count(*) FROM trials")).scalar() == 0


def test_in_memory_database_works() -> None:
    engine = db.make_engine("sqlite://")
    try:
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()


def test_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "clusterd.db"
    path.write_bytes(b"this is not sqlite, just some text long enough " * 50)
    with pytest.raises(StorageError) as info:
        db.make_engine(f"sqlite:///{path}")
    assert f"the database {path} is not a SQLite database" in info.value.message
    assert "move the file aside" in info.value.message


def test_unwritable_directory_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match=f"cannot create the database {blocker}/x/c.db"):
        db.make_engine(f"sqlite:///{blocker}/x/c.db")


def test_home_relative_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    engine = db.make_engine("sqlite:///~/sub/c.db")
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()
    assert (tmp_path / "sub" / "c.db").stat().st_size > 0


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(StorageError, match="clusterd works with SQLite and PostgreSQL"):
        db.make_engine("mysql://u:secret@h/db")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_unreachable_postgres_names_url_without_password(scheme: str) -> None:
    with pytest.raises(StorageError) as info:
        db.make_engine(f"{scheme}://alice:s3cret@127.0.0.1:1/clusterd")
    message = info.value.message
    assert "the database postgresql://alice:***@127.0.0.1:1/clusterd cannot be reached" in message
    assert "s3cret" not in message
    assert "check that the server is up and CLUSTERD_DB_URL" in message


# --------------------------------------------------------------------------- transaction


def _insert_lease(conn: Any, row_id: int = 1) -> None:
    conn.execute(
        insert(models.Lease).values(
            id=row_id, holder="h:1:n", host="h", pid=1, acquired_at=0.0, heartbeat_at=0.0
        )
    )


def test_transaction_commits(engine: Engine) -> None:
    with db.transaction(engine) as conn:
        _insert_lease(conn)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lease")).scalar() == 1


def test_transaction_rolls_back_and_reraises(engine: Engine) -> None:
    with pytest.raises(RuntimeError), db.transaction(engine) as conn:
        _insert_lease(conn)
        raise RuntimeError("boom")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lease")).scalar() == 0


def test_integrity_errors_pass_through(engine: Engine) -> None:
    with db.transaction(engine) as conn:
        _insert_lease(conn)
    with pytest.raises(IntegrityError), db.transaction(engine) as conn:
        _insert_lease(conn)


def test_locked_database_is_a_clear_storage_error(
    engine: Engine, make_sqlite_engine: Callable[..., Engine], sqlite_url: str
) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        impatient = make_sqlite_engine(busy_timeout=0.2)
        with pytest.raises(StorageError) as info, db.transaction(impatient) as conn:
            _insert_lease(conn)
    finally:
        other.close()
    message = info.value.message
    assert message.startswith(f"the database {path} is locked by another process (waited 0.2 s)")
    assert "no other clusterd or sqlite3 shell is writing to it" in message
    with db.transaction(engine) as conn:  # usable again once the other lock is gone
        _insert_lease(conn)


def test_readonly_database_is_a_clear_storage_error(engine: Engine, sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    with pytest.raises(StorageError) as info, db.transaction(engine) as conn:
        conn.exec_driver_sql("PRAGMA query_only = ON")  # root ignores file modes; this doesn't
        _insert_lease(conn)
    engine.dispose()  # drop the query_only connection
    assert info.value.message.startswith(f"the database {path} is read-only")
    assert "writable by you" in info.value.message


def test_full_database_is_a_clear_storage_error(engine: Engine, sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    with pytest.raises(StorageError) as info, db.transaction(engine) as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")  # the "disk" is now full
        for row_id in range(1, 2000):
            conn.execute(
                insert(models.Lease).values(
                    id=row_id, holder="x" * 200, host="h", pid=1, acquired_at=0, heartbeat_at=0
                )
            )
    engine.dispose()
    assert info.value.message.startswith(f"the database {path} cannot grow: the disk is full")
    assert "free space" in info.value.message


def test_missing_schema_says_run_upgrade(make_sqlite_engine: Callable[..., Engine]) -> None:
    with (
        pytest.raises(StorageError, match="run `clusterd db upgrade`"),
        db.transaction(make_sqlite_engine()) as conn,
    ):
        conn.execute(text("SELECT * FROM lease"))


# --------------------------------------------------------------------------- fscheck

# fixtures/mountinfo_login_node.txt: lines in the recorded format of /proc/self/mountinfo
# (proc(5)) on a RHEL-style Slurm login node: local xfs root and /tmp, NFSv4 home
# directories under autofs, Lustre scratch, GPFS projects, a CIFS share whose mount point
# has a space (escaped \040), FUSE mounts. Host names and addresses anonymised.
LOGIN_NODE_MOUNTINFO = (Path(__file__).parent / "fixtures" / "mountinfo_login_node.txt").read_text()


def test_parse_mountinfo_reads_every_line() -> None:
    mounts = fscheck.parse_mountinfo(LOGIN_NODE_MOUNTINFO)
    assert len(mounts) == 15
    home = next(m for m in mounts if m.mount_point == "/home/u")
    assert home == fscheck.Mount(
        mount_id=412,
        parent_id=95,
        root="/",
        mount_point="/home/u",
        fstype="nfs4",
        source="nas01.hpc.example.org:/export/home/u",
        options="rw,relatime",
    )
    assert any(m.mount_point == "/mnt/team share" and m.fstype == "cifs" for m in mounts)


def test_parse_mountinfo_skips_malformed_lines() -> None:
    text = "garbage\n\n36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw\n1 2 3\n"
    assert [m.mount_point for m in fscheck.parse_mountinfo(text)] == ["/mnt2"]


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/home/u/.local/share/clusterd/clusterd.db", "nfs4"),
        ("/home/u", "nfs4"),
        ("/home/other/x.db", "autofs"),
        ("/lustre/scratch/u/clusterd.db", "lustre"),
        ("/lustre/scratchy/x.db", "xfs"),  # a prefix of the name is not a parent directory
        ("/gpfs/projects/ml/clusterd.db", "gpfs"),
        ("/mnt/team share/clusterd.db", "cifs"),
        ("/mnt/remote/clusterd.db", "fuse.sshfs"),
        ("/tmp/clusterd-u/clusterd.db", "xfs"),
        ("/var/tmp/u/clusterd.db", "xfs"),
        ("/", "xfs"),
    ],
)
def test_filesystem_type_takes_the_longest_mount_point(path: str, fstype: str) -> None:
    assert fscheck.filesystem_type(path, LOGIN_NODE_MOUNTINFO) == fstype


def test_the_last_mount_at_a_mount_point_wins() -> None:
    text = LOGIN_NODE_MOUNTINFO + "900 22 0:99 / /lustre/scratch rw - tmpfs tmpfs rw\n"
    assert fscheck.filesystem_type("/lustre/scratch/a", text) == "tmpfs"


@pytest.mark.parametrize(
    "fstype",
    ["nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "glusterfs",
     "fuse.sshfs", "fuse.glusterfs", "9p", "afs", "panfs", "wekafs", "NFS4"],
)  # fmt: skip
def test_network_filesystems(fstype: str) -> None:
    assert fscheck.is_network_fs(fstype)


@pytest.mark.parametrize(
    "fstype",
    ["ext4", "xfs", "btrfs", "zfs", "tmpfs", "overlay", "autofs", "fuse.gvfsd-fuse",
     "fuse.lxcfs", "fuseblk", "squashfs", "unknown"],
)  # fmt: skip
def test_local_filesystems(fstype: str) -> None:
    assert not fscheck.is_network_fs(fstype)


def test_refusal_message_is_exact() -> None:
    db_path = "/home/u/.local/share/clusterd/clusterd.db"
    with pytest.raises(NetworkFilesystem) as info:
        fscheck.refuse_network_fs(db_path, mountinfo_text=LOGIN_NODE_MOUNTINFO, environ={})
    assert info.value.message == (
        "the database /home/u/.local/share/clusterd/clusterd.db is on a network filesystem "
        "(nfs4); SQLite locking is unreliable there. Set CLUSTERD_HOME to a local disk "
        "(e.g. /tmp or /var/tmp/$USER) or CLUSTERD_DB_URL to a PostgreSQL server; "
        "CLUSTERD_ALLOW_NETWORK_FS=1 overrides."
    )
    assert info.value.code == "network_fs"


def test_override_and_local_paths_pass() -> None:
    db_path = "/lustre/scratch/u/clusterd.db"
    override = {"CLUSTERD_ALLOW_NETWORK_FS": "1"}
    fscheck.refuse_network_fs(db_path, mountinfo_text=LOGIN_NODE_MOUNTINFO, environ=override)
    fscheck.refuse_network_fs("/tmp/u/c.db", mountinfo_text=LOGIN_NODE_MOUNTINFO, environ={})


def test_this_machines_tmp_is_local(tmp_path: Path) -> None:
    """The real /proc/self/mountinfo parses, and the test machine's tmp is not networked."""
    if not fscheck.MOUNTINFO.exists():
        pytest.skip("no /proc/self/mountinfo on this system")
    assert fscheck.parse_mountinfo(fscheck.MOUNTINFO.read_text())
    assert fscheck.filesystem_type(tmp_path) != "unknown"
    assert fscheck.network_fs_type(tmp_path / "not" / "yet" / "there.db") is None


def _pretend_networked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point fscheck at a mountinfo in which tmp_path is an NFS mount."""
    fake = tmp_path / "mountinfo"
    fake.write_text(
        "22 1 253:0 / / rw,relatime - ext4 /dev/vda rw\n"
        f"412 22 0:52 / {tmp_path.resolve()} rw,relatime - nfs4 nas01:/export/u rw,vers=4.2\n"
    )
    monkeypatch.setattr(fscheck, "MOUNTINFO", fake)
    monkeypatch.delenv("CLUSTERD_ALLOW_NETWORK_FS", raising=False)
    return tmp_path / "home" / "clusterd.db"


def test_make_engine_refuses_a_network_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _pretend_networked(tmp_path, monkeypatch)
    with pytest.raises(NetworkFilesystem) as info:
        db.make_engine(f"sqlite:///{path}")
    assert info.value.message == fscheck.network_fs_message(path, "nfs4")
    assert f"the database {path} is on a network filesystem (nfs4)" in info.value.message
    assert not path.exists()


def test_override_env_lets_make_engine_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _pretend_networked(tmp_path, monkeypatch)
    monkeypatch.setenv("CLUSTERD_ALLOW_NETWORK_FS", "1")
    engine = db.make_engine(f"sqlite:///{path}")
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()
    assert path.exists()


def test_statfs_second_opinion_is_optional(tmp_path: Path) -> None:
    assert fscheck.statfs_type(tmp_path) is None  # local here, and never raises
    assert os.path.exists(tmp_path)


def test_a_sqlite_library_too_old_for_the_upserts_is_refused_in_words() -> None:
    from clusterd.errors import StorageError

    with pytest.raises(StorageError, match=r"SQLite library is 3\.22\.0; clusterd needs 3\.24"):
        db.check_sqlite_version((3, 22, 0))
    db.check_sqlite_version((3, 24, 0))  # new enough: no error
