"""seqjax.checkpoints: damaged checkpoints (truncated files, an empty step folder, a torn _METADATA, a flipped
byte) are set aside and the newest good one restored; non-finite states are never saved; the best state is
never replaced by an older one."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import checkpoints, runner, train
from seqjax.checkpoints import Checkpointer
from seqjax.train import TrainState

WEIGHTS = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)


def _state(step: int) -> TrainState:
    return TrainState({"w": jnp.asarray(WEIGHTS + step)}, (), jnp.asarray(step, jnp.int32), jax.random.key(3))


def _save(workdir: Path, *steps: int) -> None:
    keeper = Checkpointer(workdir, every=1, keep=5)
    for step in steps:
        keeper.save(_state(step), force=True)
    keeper.close()


def _restore(workdir: Path) -> tuple[TrainState | None, list[str]]:
    lines = []
    keeper = Checkpointer(workdir, every=1, report=lines.append)
    try:
        return keeper.restore_latest(_state(0)), lines
    finally:
        keeper.close()


def _largest_file(folder: Path) -> Path:
    """The largest of the array data files (OCDBT's ``d/`` folders)."""
    return max((p for p in folder.rglob("*") if p.is_file() and p.parent.name == "d"), key=lambda p: p.stat().st_size)


def _truncate_array_file(step_dir: Path) -> None:
    path = _largest_file(step_dir / checkpoints.STATE_ITEM)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty_the_folder(step_dir: Path) -> None:
    for path in sorted(step_dir.rglob("*"), key=lambda p: -len(p.parts)):
        path.rmdir() if path.is_dir() else path.unlink()


def _tear_metadata(step_dir: Path) -> None:
    path = step_dir / checkpoints.STATE_ITEM / "_METADATA"
    path.write_text(path.read_text()[:40])


def _flip_a_byte(step_dir: Path) -> None:
    """One bit of the largest array data file, in each copy of it (Orbax keeps the process's and a merged one)."""
    largest = _largest_file(step_dir / checkpoints.STATE_ITEM).stat().st_size
    for path in (step_dir / checkpoints.STATE_ITEM).rglob("*"):
        if path.parent.name == "d" and path.stat().st_size == largest:
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0x10  # inside the compressed array: decodes to other numbers
            path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate_array_file, _empty_the_folder, _tear_metadata, _flip_a_byte])
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_one_before_restored(tmp_path, damage):
    _save(tmp_path, 1, 2)
    damage(tmp_path / "checkpoints" / "2")
    keeper = Checkpointer(tmp_path, every=1)
    assert keeper.check(_state(0)) in (1, 2)  # reads metadata only: a torn _METADATA is passed over
    keeper.close()
    restored, lines = _restore(tmp_path)
    assert int(restored.step) == 1
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), WEIGHTS + 1)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith(f"checkpoint {tmp_path / 'checkpoints' / '2'} ")
    assert lines[0].endswith(f"moved to {tmp_path / 'damaged_checkpoints' / '2'}")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]
    _save(tmp_path, 2)  # the step can be saved again
    assert int(_restore(tmp_path)[0].step) == 2


def test_a_changed_array_fails_its_checksum(tmp_path):
    """The checksum of every array is written with it; one that reads back other bytes is never trained on."""
    _save(tmp_path, 1, 2)
    checksums = tmp_path / "checkpoints" / "2" / checkpoints.CHECKSUMS_ITEM
    record = next(p for p in checksums.rglob("*") if p.is_file() and p.read_text().lstrip().startswith("{"))
    table = json.loads(record.read_text())
    assert table["params/w"] == checkpoints._crc32(WEIGHTS + 2)
    table["params/w"] ^= 1
    record.write_text(json.dumps(table))
    restored, lines = _restore(tmp_path)
    assert int(restored.step) == 1
    assert "fails its checksum (params/w was changed on disk)" in lines[0]


def test_with_every_checkpoint_damaged_there_is_none(tmp_path):
    _save(tmp_path, 1, 2)
    for step in (1, 2):
        _truncate_array_file(tmp_path / "checkpoints" / str(step))
    restored, lines = _restore(tmp_path)
    assert restored is None and len(lines) == 2
    assert sorted(p.name for p in (tmp_path / "damaged_checkpoints").iterdir()) == ["1", "2"]


def test_the_best_state_is_never_replaced_by_an_older_one(tmp_path):
    """``restore(..., fallback=False)``: the best state's score was recorded; a damaged one is an error."""
    _save(tmp_path, 1, 2)
    _flip_a_byte(tmp_path / "checkpoints" / "2")
    with pytest.raises(checkpoints.DamagedCheckpoint, match=r"checkpoints/2 fails its checksum") as error:
        checkpoints.restore(tmp_path, _state(0), fallback=False)
    assert "\n" not in str(error.value)
    assert (tmp_path / "checkpoints" / "2").is_dir()


def test_a_state_with_nonfinite_parameters_is_never_saved(tmp_path):
    keeper = Checkpointer(tmp_path, every=1)
    bad = TrainState({"w": jnp.asarray([1.0, jnp.inf])}, (), jnp.asarray(3, jnp.int32), jax.random.key(0))
    with pytest.raises(checkpoints.NonFiniteState, match=r"step 3 hold NaN or inf \(params/w\)"):
        keeper.save(bad, force=True)
    assert keeper.latest_step() is None
    keeper.close()


def test_a_run_resumes_from_the_newest_good_checkpoint_to_the_straight_runs_parameters(tmp_path, capsys):
    def fit(workdir, num_steps):
        training = train.make_training(
            lambda p, b, k: (jnp.sum(jnp.square(p["w"] * b - 1.0)), {}), train.optimizer("adam", 0.1)
        )
        state = training.init({"w": jnp.zeros((64,))}, jax.random.key(0))
        batches = lambda k: jnp.linspace(0.0, 1.0, 64) + k
        options = runner.Options(checkpoint_every=5, keep=5, progress=False)
        with jax.numpy_dtype_promotion("standard"):
            return runner.fit(training, state, batches, num_steps, workdir, options=options).state

    straight = fit(tmp_path / "straight", 15)
    fit(tmp_path / "damaged", 10)
    _flip_a_byte(tmp_path / "damaged" / "checkpoints" / "10")
    resumed = fit(tmp_path / "damaged", 15)
    assert f"checkpoint {tmp_path / 'damaged' / 'checkpoints' / '10'} " in capsys.readouterr().err
    np.testing.assert_array_equal(np.asarray(resumed.params["w"]), np.asarray(straight.params["w"]))
