"""Atomic replacement: a reader sees the old file or the new one, whatever fails."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clusterd.node import atomic


def _dir_fd(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


@pytest.mark.parametrize("fsync", [False, True])
def test_replaces_the_file_and_leaves_no_temp_file(tmp_path: Path, fsync: bool) -> None:
    (tmp_path / "status.json").write_text("old")
    fd = _dir_fd(tmp_path)
    try:
        atomic.replace_json(fd, "status.json", {"exit_code": 0}, fsync=fsync)
    finally:
        os.close(fd)
    assert json.loads((tmp_path / "status.json").read_text()) == {"exit_code": 0}
    assert os.listdir(tmp_path) == ["status.json"]


def test_mode_is_the_one_asked_for(tmp_path: Path) -> None:
    atomic.replace_at(str(tmp_path / "launch.json"), b"{}", mode=0o600, fsync=False)
    assert (tmp_path / "launch.json").stat().st_mode & 0o777 == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "job.json"
    target.write_text("old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        atomic.replace_at(str(target), b"new", fsync=True)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["job.json"]


def test_a_failed_rename_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "params.json").mkdir()  # a directory in the way: rename fails
    with pytest.raises(OSError):
        atomic.replace_at(str(tmp_path / "params.json"), b"{}", fsync=False)
    assert os.listdir(tmp_path) == ["params.json"]


def test_a_symlink_at_the_target_is_replaced_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "status.json").symlink_to(victim)
    atomic.replace_at(str(tmp_path / "status.json"), b"{}", fsync=False)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "status.json").is_symlink()
    assert (tmp_path / "status.json").read_text() == "{}"


def test_a_symlink_planted_at_the_temp_name_is_not_written_through(tmp_path: Path) -> None:
    """Another user guessing our temp name gets their link removed, not written through."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    fd = _dir_fd(tmp_path)
    try:
        from _thread import get_ident

        tmp = f".status.json.{os.getpid()}.{get_ident()}.tmp"
        os.symlink(victim, tmp, dir_fd=fd)
        atomic.replace(fd, "status.json", b"{}", fsync=False)
    finally:
        os.close(fd)
    assert victim.read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["status.json", "victim"]
