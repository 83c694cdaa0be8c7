"""seqjax.workdir: atomic writes never leave a half-written or temporary file behind."""

import json
import os
import re
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


def test_claim_marks_a_new_or_empty_directory(tmp_path):
    path = workdir.claim(tmp_path / "new", "exp", {"lens": (1, 2), "lr": 0.1})
    assert json.loads((path / "flags.json").read_text()) == {"experiment": "exp", "flags": {"lens": [1, 2], "lr": 0.1}}
    (tmp_path / "empty").mkdir()
    assert (workdir.claim(tmp_path / "empty", "exp", {}) / "flags.json").exists()


def test_claim_accepts_its_own_run_when_the_fixed_flags_agree(tmp_path):
    workdir.claim(tmp_path, "exp", {"hidden": 8, "steps": 10}, fixed=("hidden",))
    (tmp_path / "checkpoints").mkdir()
    workdir.claim(tmp_path, "exp", {"hidden": 8, "steps": 20}, fixed=("hidden",))
    assert json.loads((tmp_path / "flags.json").read_text())["flags"] == {"hidden": 8, "steps": 20}


def test_a_record_older_than_a_fixed_flag_ran_with_its_default(tmp_path):
    """A run recorded before ``encoder`` existed resumes with the default encoder, and only with it."""
    workdir.claim(tmp_path, "exp", {"hidden": 8})
    defaults = {"hidden": 4, "encoder": "rnn"}
    with pytest.raises(workdir.WorkdirError, match="made with --encoder=rnn, this run has --encoder=transformer"):
        workdir.claim(tmp_path, "exp", {"hidden": 8, "encoder": "transformer"}, ("hidden", "encoder"), defaults)
    with pytest.raises(workdir.WorkdirError, match="made with --encoder=None"):  # no defaults: no match
        workdir.claim(tmp_path, "exp", {"hidden": 8, "encoder": "rnn"}, ("hidden", "encoder"))
    workdir.claim(tmp_path, "exp", {"hidden": 8, "encoder": "rnn"}, ("hidden", "encoder"), defaults)
    assert json.loads((tmp_path / "flags.json").read_text())["flags"] == {"hidden": 8, "encoder": "rnn"}


@pytest.mark.parametrize(
    ("setup", "flags", "message"),
    [
        (lambda p: (p / "notes.txt").write_text("x"), {}, "is not empty and holds no flags.json of a seqjax run"),
        (lambda p: (p / "flags.json").write_text("{not json"), {}, "flags.json is not a seqjax run record"),
        (lambda p: (p / "flags.json").write_text('{"hidden": 8}'), {}, "flags.json is not a seqjax run record"),
        (lambda p: workdir.claim(p, "other", {}), {}, "holds a run of other, not exp; give a new --workdir"),
        (
            lambda p: workdir.claim(p, "exp", {"lens": [1, 2]}),
            {"lens": [1, 3]},
            "made with --lens=1,2, this run has --lens=1,3",
        ),
    ],
)
def test_claim_refuses_without_writing(tmp_path, setup, flags, message):
    setup(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(workdir.WorkdirError, match=re.escape(message)) as error:
        workdir.claim(tmp_path, "exp", flags, fixed=("lens",))
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
