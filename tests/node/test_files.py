"""The secure-file helpers: no symlink is followed, nobody else's file is read as ours."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clusterd.node import files


def test_create_new_refuses_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "stdout").symlink_to(victim)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError):
            files.create_new(fd, "stdout", 0o644, b"output")
    finally:
        os.close(fd)
    assert victim.read_text() == "precious"


def test_read_own_refuses_a_symlink_and_a_loose_mode(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("{}")
    real.chmod(0o600)
    (tmp_path / "launch.json").symlink_to(real)
    with pytest.raises(files.UnsafeFile, match="symlink"):
        files.read_own(str(tmp_path / "launch.json"))
    real.chmod(0o666)
    with pytest.raises(files.UnsafeFile, match="writable by group or others"):
        files.read_own(str(real))
    real.chmod(0o644)
    assert files.read_own(str(real)) == b"{}"


def test_read_own_refuses_a_file_over_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "launch.json"
    big.write_bytes(b"x" * 100)
    with pytest.raises(files.UnsafeFile, match="larger than 10 bytes"):
        files.read_own(str(big), limit=10)


def test_open_subdir_refuses_a_symlinked_dir(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "attempt-1").symlink_to(tmp_path / "elsewhere")
    fd = files.open_dir(str(tmp_path))
    try:
        with pytest.raises(files.UnsafeFile, match="not a directory"):
            files.open_subdir(fd, "attempt-1", "attempt-1", create=True, exclusive=False)
        with pytest.raises(FileExistsError):
            files.open_subdir(fd, "elsewhere", "elsewhere", create=True, exclusive=True)
    finally:
        os.close(fd)


def test_open_own_dir_refuses_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        files.open_own_dir(str(tmp_path / "link"))
    os.close(files.open_own_dir(str(tmp_path / "real")))
