"""seqjax.workdir: atomic writes never leave a half-written or temporary file behind."""

import os
import stat

import pytest

from seqjax import workdir


def test_write_atomic_replaces_whole_files(tmp_path):
    path = workdir.write_atomic(tmp_path / "a.txt", "first")
    workdir.write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = workdir.write_json(tmp_path / "summary.json", {"ok": 1})

    class Unwritable:
        pass

    with pytest.raises(TypeError):
        workdir.write_atomic(path, Unwritable())  # neither str nor bytes: fails inside the write
    assert path.read_text() == '{\n  "ok": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_prepare_rejects_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        workdir.prepare(tmp_path / "f")
    assert workdir.prepare(tmp_path / "new" / "dir").is_dir()
