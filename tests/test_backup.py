"""A new run never destroys a previous run's outputs (numdp.io.backup): `numdp run` and
`numdp train` rename them to `#name.N#` and say so in one line; a restart continues its files
and backs nothing up."""
from __future__ import annotations

import io

import h5py
import pytest

from numdp.config import load_run_settings
from numdp.errors import InputError
from numdp.io.backup import Backups, back_up, backup_name
from numdp.md.safety import SafetyStop
from numdp.md.setup import run_md
from test_md_potential import LennardJones
from test_md_run import ARGON, argon_dir
from test_train_run import data_dir, make_input, run as train  # noqa: F401 - data_dir is a fixture


def listing(path):
    return sorted(p.name for p in path.iterdir() if p.is_file())


def steps_of(path):
    with h5py.File(path, "r") as f:
        return f["particles/trajectory/position/step"][()].tolist()


def test_numbering_takes_the_first_free_number(tmp_path):
    a = tmp_path / "traj.h5md"
    a.write_text("1")
    assert back_up([a, None, a, tmp_path / "missing"]) == [(a, backup_name(a, 1))]
    assert not a.exists() and (tmp_path / "#traj.h5md.1#").read_text() == "1"
    a.write_text("2")
    back_up([a])
    assert (tmp_path / "#traj.h5md.2#").read_text() == "2"
    (tmp_path / "#traj.h5md.1#").unlink()
    a.write_text("3")
    back_up([a])
    assert (tmp_path / "#traj.h5md.1#").read_text() == "3"


def test_unrenamable_file_is_one_line_error(tmp_path, monkeypatch):
    from pathlib import Path

    (tmp_path / "log.txt").write_text("x")

    def refuse(self, target):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "rename", refuse)
    with pytest.raises(InputError, match=r"log.txt: cannot back up the previous run's file to #log.txt.1# "
                                         r"\(Permission denied\)"):
        back_up([tmp_path / "log.txt"])


def test_backup_is_all_or_nothing(tmp_path, monkeypatch):
    """The second rename fails: the first file gets its name back, nothing is left renamed."""
    from pathlib import Path

    a, b = tmp_path / "a.out", tmp_path / "b.out"
    a.write_text("a")
    b.write_text("b")
    rename = Path.rename

    def refuse_b(self, target):
        if self.name == "b.out":
            raise PermissionError(13, "Permission denied")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse_b)
    with pytest.raises(InputError, match="b.out: cannot back up"):
        back_up([a, b])
    assert listing(tmp_path) == ["a.out", "b.out"] and a.read_text() == "a"


@pytest.mark.parametrize("error", [RuntimeError("the writer failed"), KeyboardInterrupt()])
def test_failed_block_gives_the_backups_their_names_back(tmp_path, error):
    """A failure inside the block (Ctrl-C included): the new run's partial files go, the earlier
    files get their names back byte for byte, no #name.N# is left."""
    old, new = tmp_path / "old.out", tmp_path / "new.out"
    old.write_bytes(b"earlier\x00run")
    with pytest.raises(type(error)):
        with Backups.move([old, new, None]) as backups:
            assert backups.moved == [(old, backup_name(old, 1))]
            old.write_text("partial")
            new.write_text("partial")
            raise error
    assert listing(tmp_path) == ["old.out"] and old.read_bytes() == b"earlier\x00run"


def test_successful_or_kept_block_keeps_both(tmp_path):
    out = tmp_path / "m.h5"
    out.write_text("1")
    with Backups.move([out], "the existing") as backups:
        out.write_text("2")
    assert backups.line() == f"backed up the existing {out} to #m.h5.1#"
    assert (tmp_path / "#m.h5.1#").read_text() == "1" and out.read_text() == "2"
    with pytest.raises(RuntimeError):
        with Backups.move([out]) as backups:  # a run that wrote real data, then failed
            out.write_text("3")
            backups.keep()
            raise RuntimeError
    assert [(tmp_path / n).read_text() for n in ("#m.h5.1#", "#m.h5.2#", "m.h5")] == ["1", "2", "3"]
    with Backups.move([tmp_path / "none"]) as backups:
        pass
    assert backups.moved == [] and backups.line() == ""


def test_failed_block_leaves_an_output_that_is_no_regular_file_alone(tmp_path):
    """`-o /dev/null`: not backed up, and not removed when the run fails."""
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(RuntimeError):
        with Backups.move([fifo]) as backups:
            raise RuntimeError
    assert backups.moved == [] and fifo.exists()


def md(toml, restart=None):
    screen = io.StringIO()
    try:
        run_md(load_run_settings(toml), restart=restart, model=LennardJones(), screen=screen)
    finally:
        md.screen = screen.getvalue()


def test_new_md_run_backs_up_and_restart_does_not(tmp_path):
    toml = argon_dir(tmp_path, KIND="langevin", **{"steps = 60": "steps = 30"})
    md(toml)
    first = {name: (tmp_path / name).read_bytes() for name in ("traj.h5md", "log.txt", "ck.h5")}
    md(toml)
    lines = [l for l in md.screen.splitlines() if "backed up" in l]
    assert len(lines) == 1
    for name in ("traj.h5md", "log.txt", "ck.h5"):
        assert f"{tmp_path / name} to #{name}.1#" in lines[0]
        assert (tmp_path / f"#{name}.1#").read_bytes() == first[name]  # the old file, untouched
    assert lines[0] in (tmp_path / "log.txt").read_text()
    md(toml)
    assert "#traj.h5md.2#" in listing(tmp_path)
    before = listing(tmp_path)
    toml.write_text(toml.read_text().replace("steps = 30", "steps = 40"))
    md(toml, restart=tmp_path / "ck.h5")
    assert "backed up" not in md.screen and listing(tmp_path) == before
    assert steps_of(tmp_path / "traj.h5md") == list(range(0, 41, 5))


def test_safety_stop_at_step_zero_keeps_the_previous_trajectory(tmp_path):
    toml = argon_dir(tmp_path, KIND="langevin", **{"steps = 60": "steps = 20"})
    md(toml)
    toml.write_text(ARGON.replace("KIND", "langevin") + "[safety]\nmin_distance = 4.0\n")  # fcc: 3.75 A
    with pytest.raises(SafetyStop, match="step 0:"):
        md(toml)
    assert steps_of(tmp_path / "#traj.h5md.1#") == [0, 5, 10, 15, 20]
    assert steps_of(tmp_path / "traj.h5md") == [0]


class FailingModel(LennardJones):
    """A potential whose first evaluation raises `error` (a model that fails on this system, or
    Ctrl-C while the first force evaluation compiles)."""

    def __init__(self, error):
        super().__init__()
        self.error = error

    def compute(self, *args, **kwargs):
        raise self.error


@pytest.mark.parametrize("where", ["first force evaluation", "opening the trajectory"])
@pytest.mark.parametrize("error", [InputError("the model failed"), KeyboardInterrupt()])
def test_md_run_that_fails_before_its_first_frame_gives_the_files_their_names_back(tmp_path, monkeypatch,
                                                                                   where, error):
    """Nothing of the new run's own is written yet (only the log's header lines): the previous
    run's trajectory, log and checkpoint are back under their names byte for byte, no #name.N#."""
    toml = argon_dir(tmp_path, KIND="langevin", **{"steps = 60": "steps = 10"})
    md(toml)
    names = ("traj.h5md", "log.txt", "ck.h5")
    before = {name: (tmp_path / name).read_bytes() for name in names}
    model = LennardJones()
    if where == "first force evaluation":
        model = FailingModel(error)
    else:
        def failing(*args, **kwargs):
            raise error

        monkeypatch.setattr("numdp.md.setup.open_trajectory", failing)
    with pytest.raises(type(error)):
        run_md(load_run_settings(toml), model=model, screen=io.StringIO())
    assert {name: (tmp_path / name).read_bytes() for name in names} == before
    assert not any(name.startswith("#") for name in listing(tmp_path))


def test_new_training_backs_up_and_restart_does_not(tmp_path, data_dir):
    path = make_input(tmp_path, data_dir, steps=5)
    work = path.parent
    train(path)
    outputs = ("lcurve.out", "model.h5", "model.ckpt.h5")
    first = {name: (work / name).read_bytes() for name in outputs}
    stream = io.StringIO()
    train(path, stream=stream)
    lines = [l for l in stream.getvalue().splitlines() if "backed up" in l]
    assert len(lines) == 1
    for name in outputs:
        assert f"#{name}.1#" in lines[0]
        assert (work / f"#{name}.1#").read_bytes() == first[name]
    before = listing(work)
    path.write_text(path.read_text().replace("numb_steps = 5", "numb_steps = 7"))
    stream = io.StringIO()
    train(path, restart=work / "model.ckpt.h5", stream=stream)
    assert "backed up" not in stream.getvalue() and listing(work) == before


@pytest.mark.parametrize("error", [RuntimeError("first step failed"), KeyboardInterrupt()])
def test_training_that_fails_in_its_first_step_gives_the_files_their_names_back(tmp_path, data_dir,
                                                                                monkeypatch, error):
    """The first step raises (an error, or a KeyboardInterrupt): nothing of the new run is left,
    the previous run's files are back under their names, byte for byte; a run that fails after
    its first step (a learning-curve row written) keeps both."""
    from numdp.train.loop import Trainer

    path = make_input(tmp_path, data_dir, steps=4)   # lcurve rows 1 and 4 (disp_freq 4)
    work = path.parent
    train(path)
    outputs = ("lcurve.out", "model.h5", "model.ckpt.h5")
    first = {name: (work / name).read_bytes() for name in outputs}
    step = Trainer.train_step

    def failing(self, k, display):
        if k == failing.at:
            raise error
        return step(self, k, display)

    failing.at = 0
    monkeypatch.setattr(Trainer, "train_step", failing)
    with pytest.raises(type(error)):
        train(path)
    assert {name: (work / name).read_bytes() for name in outputs} == first
    assert not any(name.startswith("#") for name in listing(work))
    failing.at = 1  # the lcurve has a row of the new run (row 1): both are kept
    with pytest.raises(type(error)):
        train(path)
    assert (work / "#lcurve.out.1#").read_bytes() == first["lcurve.out"]
    assert (work / "lcurve.out").read_bytes() != first["lcurve.out"]


def test_prepare_outputs_makes_directories_and_refuses_unwritable_outputs(tmp_path, monkeypatch):
    from numdp.io.backup import prepare_outputs

    prepare_outputs([tmp_path / "a" / "b" / "traj.h5md", None])
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"file/log.txt: cannot create the output directory .*file"):
        prepare_outputs([tmp_path / "file" / "log.txt"])
    with pytest.raises(InputError, match=r"a: is a directory, not an output file"):
        prepare_outputs([tmp_path / "a"])
    monkeypatch.setattr("numdp.io.backup.os.access", lambda path, mode: False)  # a read-only directory
    with pytest.raises(InputError, match=r"log.txt: cannot write in the output directory .* \(permission denied\)"):
        prepare_outputs([tmp_path / "log.txt"])


def test_md_run_that_cannot_write_fails_before_backing_up(tmp_path):
    """An output under a regular file: one line, and the previous run's files stay where they are."""
    toml = argon_dir(tmp_path, KIND="langevin", **{"steps = 60": "steps = 5"})
    md(toml)
    before = {name: (tmp_path / name).read_bytes() for name in ("traj.h5md", "log.txt", "ck.h5")}
    (tmp_path / "notadir").write_text("x")
    toml.write_text(toml.read_text().replace('trajectory = "traj.h5md"', 'trajectory = "notadir/traj.h5md"'))
    with pytest.raises(InputError, match=r"notadir/traj.h5md: cannot create the output directory"):
        md(toml)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert not any(name.startswith("#") for name in listing(tmp_path))


def test_training_that_cannot_write_fails_before_backing_up(tmp_path, data_dir, monkeypatch):
    """... and before the data statistics, which can take minutes."""
    from numdp.train.loop import Trainer

    path = make_input(tmp_path, data_dir, steps=2)
    work = path.parent
    train(path)
    before = {name: (work / name).read_bytes() for name in ("lcurve.out", "model.h5", "model.ckpt.h5")}
    (work / "notadir").write_text("x")
    path.write_text(path.read_text().replace("seed = 11", 'seed = 11\ndisp_file = "notadir/lcurve.out"'))

    def never(*args, **kwargs):
        raise AssertionError("statistics computed before the outputs were checked")

    monkeypatch.setattr(Trainer, "_statistics", never)
    with pytest.raises(InputError, match=r"notadir/lcurve.out: cannot create the output directory"):
        train(path)
    assert {name: (work / name).read_bytes() for name in before} == before
    assert not any(name.startswith("#") for name in listing(work))


def test_backup_line_names_six_files_and_counts_the_rest(tmp_path):
    """A per-frame dump series can back up thousands of files: the line names the first six."""
    from numdp.io.backup import LINE_FILES, back_up, backup_line

    paths = [tmp_path / f"{k}.lammpstrj" for k in range(LINE_FILES + 4)]
    for p in paths:
        p.write_text("x")
    line = backup_line(back_up(paths))
    assert line.count(" to #") == LINE_FILES and line.endswith(" and 4 more files the same way")
    assert all((tmp_path / f"#{p.name}.1#").is_file() for p in paths)
