"""Outputs that are not regular files (/dev/null-like devices, FIFOs, sockets), full disks and
folders that refuse new files: written into or refused with one line, never replaced, never
backed up, and no traceback (numdp.io.atomic, numdp.io.backup, numdp.md.reporters,
numdp.train.report, numdp model-devi).

Device nodes are made in tmp_path (mknod needs root: those cases are skipped otherwise); a FIFO
needs no privilege.  /dev/null and /dev/full themselves are never used as targets.
"""
from __future__ import annotations

import errno
import os
import socket
import stat
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from numdp.cli import main
from numdp.errors import InputError
from numdp.io.atomic import atomic_h5, atomic_path
from numdp.io.backup import Backups, prepare_outputs
from numdp.io.h5md import read_checkpoint
from numdp.io.model_file import write_model
from numdp.train.report import Lcurve
from randmodel import random_config, random_params
from test_train_run import data_dir, make_input  # noqa: F401 - data_dir is a fixture
from tests_util import write_system

ROOT = Path(__file__).resolve().parents[1]
WATER = ROOT / "inputs" / "water"
NULL, FULL = 3, 7   # minor numbers of Linux's memory devices (major 1): /dev/null, /dev/full


def char_node(path: Path, minor: int) -> Path:
    """A character device like /dev/null (minor 3) or /dev/full (7) at `path`."""
    if os.geteuid() != 0:
        pytest.skip("making a device node (mknod) needs root")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    return path


def assert_char_node(path: Path) -> None:
    assert stat.S_ISCHR(os.lstat(path).st_mode), f"{path} is no longer a character device"


def assert_fifo(path: Path) -> None:
    assert stat.S_ISFIFO(os.lstat(path).st_mode), f"{path} is no longer a FIFO"


class FifoReader:
    """A FIFO at `path` with a thread reading whatever its writers send (`text`); `sessions`
    counts the writers' opens (a reader sees end-of-file when one closes)."""

    def __init__(self, path: Path):
        self.path = path
        os.mkfifo(path)
        self.chunks: list[bytes] = []
        self.sessions = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            with open(self.path, "rb") as fh:   # blocks until a writer opens it
                data = fh.read()
            if data or not self.stop.is_set():
                self.sessions += 1
                self.chunks.append(data)

    def text(self, timeout: float = 10.0) -> str:
        """What was written, once the writers are done (call it after the command returned)."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        while self.thread.is_alive() and time.monotonic() < deadline:
            try:   # release a reader waiting for the next writer
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:   # no reader waiting (yet): ENXIO
                pass
            self.thread.join(0.05)
        return b"".join(self.chunks).decode()


def one_error_line(capsys, *words) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for w in words:
        assert str(w) in err[0], (w, err[0])
    return err[0]


# -- numdp.io.atomic / numdp.io.backup ------------------------------------------------------------


def test_atomic_path_writes_into_a_fifo_and_leaves_it_a_fifo(tmp_path):
    reader = FifoReader(tmp_path / "pipe")
    with atomic_path(tmp_path / "pipe", "JSON file") as target:
        assert target == tmp_path / "pipe"
        target.write_text("hello\n")
    assert reader.text() == "hello\n" and reader.sessions == 1
    assert_fifo(tmp_path / "pipe")
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]   # no temporary, no backup


def test_atomic_path_writes_into_a_character_device(tmp_path):
    null = char_node(tmp_path / "null", NULL)
    with atomic_path(null, "detail file") as target:
        assert target == null
        target.write_text("discarded\n")
    assert_char_node(null)
    full = char_node(tmp_path / "full", FULL)
    with pytest.raises(InputError, match=f"^{full}: cannot write detail file .*No space left on device"):
        with atomic_path(full, "detail file") as target:
            with open(target, "w") as fh:
                fh.write("x")
    assert_char_node(full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "null"]


def test_hdf5_refuses_a_fifo_and_writes_into_a_null_device(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InputError, match="pipe: is a FIFO; an HDF5 checkpoint needs a regular file"):
        with atomic_h5(tmp_path / "pipe", "checkpoint"):
            pass
    assert_fifo(tmp_path / "pipe")
    null = char_node(tmp_path / "null", NULL)
    with atomic_h5(null, "checkpoint") as h5:
        h5.create_dataset("a", data=np.arange(3))
    assert_char_node(null)


def test_backups_leave_devices_and_fifos_alone(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "old.out").write_text("earlier\n")
    with pytest.raises(RuntimeError):
        with Backups.move([tmp_path / "pipe", tmp_path / "old.out"]) as backups:
            assert [old.name for old, _ in backups.moved] == ["old.out"]
            raise RuntimeError("the run fails early")
    assert_fifo(tmp_path / "pipe")   # neither moved nor removed by the roll-back
    assert (tmp_path / "old.out").read_text() == "earlier\n"


def test_prepare_outputs_refuses_sockets_block_devices_and_uncreatable_files(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = tmp_path / "sock"
    try:
        sock.bind(str(path))
        with pytest.raises(InputError, match=f"^{path}: is a socket; give the output a regular file"):
            prepare_outputs([path])
        with pytest.raises(InputError, match="is a socket"):
            with atomic_path(path, "trajectory"):
                pass
    finally:
        sock.close()
    if Path("/proc/self").is_dir():   # a folder where even root cannot create a file
        name = Path(f"/proc/numdp_test_{os.getpid()}.txt")
        # root passes the folder's access check and is refused at the creation
        with pytest.raises(InputError, match=f"^{name}: cannot (create the output file|write in the output directory)"):
            prepare_outputs([name])
    os.mkfifo(tmp_path / "pipe")
    prepare_outputs([tmp_path / "pipe", tmp_path / "new" / "file.out"])   # accepted; nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "pipe", "sock"]
    assert list((tmp_path / "new").iterdir()) == []
    if os.geteuid() == 0:   # a block device of an unused major number: refused before any open
        os.mknod(tmp_path / "blk", stat.S_IFBLK | 0o600, os.makedev(240, 0))
        with pytest.raises(InputError, match="blk: is a block device"):
            prepare_outputs([tmp_path / "blk"])
        assert stat.S_ISBLK(os.lstat(tmp_path / "blk").st_mode)


# -- numdp test --json, numdp model-devi -o --------------------------------------------------------


@pytest.fixture(scope="module")
def model_and_system(tmp_path_factory):
    """Two small random models (type_map O H) and a 2-frame labelled system."""
    d = tmp_path_factory.mktemp("targets")
    models = []
    for seed in (1, 2):
        p = random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=3, rcut=4.0, seed=seed)
        p.type_map = ["O", "H"]
        models.append(d / f"m{seed}.h5")
        write_model(p, models[-1])
    frames = [random_config(10, 2, box_len=5.5, tilt=0.2, seed=10 + f) for f in range(2)]
    system = write_system(d / "sys", np.array([f[0] for f in frames]), np.array([f[2] for f in frames]),
                          frames[0][1], ["O", "H"], energy=np.zeros(2), force=np.zeros((2, 30)))
    return models, system


def test_cli_test_json_into_a_fifo_and_a_null_device(tmp_path, model_and_system, capsys):
    models, system = model_and_system
    reader = FifoReader(tmp_path / "pipe")
    assert main(["test", "-m", str(models[0]), "-s", str(system), "--json", str(tmp_path / "pipe")]) == 0
    assert '"overall"' in reader.text()
    assert_fifo(tmp_path / "pipe")
    null = char_node(tmp_path / "null", NULL)
    assert main(["test", "-m", str(models[0]), "-s", str(system), "--json", str(null)]) == 0
    assert_char_node(null)
    assert "backed up" not in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null", "pipe"]


def test_cli_test_json_on_a_full_device_is_one_line(tmp_path, model_and_system, capsys):
    models, system = model_and_system
    full = char_node(tmp_path / "full", FULL)
    assert main(["test", "-m", str(models[0]), "-s", str(system), "--json", str(full)]) == 2
    one_error_line(capsys, full, "No space left on device")
    assert_char_node(full)


def test_cli_model_devi_into_a_fifo_and_devices(tmp_path, model_and_system, capsys):
    models, system = model_and_system
    argv = ["model-devi", "-m", *map(str, models), "-s", str(system), "--threads", "1", "-o"]
    reader = FifoReader(tmp_path / "pipe")
    assert main(argv + [str(tmp_path / "pipe")]) == 0
    rows = [ln for ln in reader.text().splitlines() if not ln.startswith("#")]
    assert len(rows) == 2
    assert_fifo(tmp_path / "pipe")
    null = char_node(tmp_path / "null", NULL)
    assert main(argv + [str(null)]) == 0
    assert_char_node(null)
    capsys.readouterr()
    full = char_node(tmp_path / "full", FULL)
    assert main(argv + [str(full)]) == 2
    one_error_line(capsys, full, "cannot write model deviation file (No space left on device)")
    assert_char_node(full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "null", "pipe"]


# -- numdp run: the log, the trajectory, the checkpoint ---------------------------------------------


def water_input(tmp_path: Path, steps: int = 10, **output) -> Path:
    """The water example for `steps` steps, outputs in tmp_path unless `output` names them."""
    keys = {"trajectory": "traj.h5md", "every": 5, "thermo_every": 5, "log": "log.txt",
            "checkpoint": "checkpoint.h5", "checkpoint_every": 5, "progress": "none", **output}
    lines = [f"{k} = {v!r}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in keys.items()]
    text = (f'[model]\nfile = "{WATER / "model.h5"}"\n'
            f'[system]\nfile = "{WATER / "start.xyz"}"\nvelocities = {{ temperature = 330.0, seed = 1 }}\n'
            'masses = { O = 16.0, H = 2.0 }\n'
            f'[md]\ntimestep = 0.0005\nsteps = {steps}\nensemble = "nve"\n'
            '[neighbor]\nskin = 2.0\n[output]\n' + "\n".join(lines) + "\n")
    path = tmp_path / "md.toml"
    path.write_text(text)
    return path


def test_run_log_on_a_full_device_is_one_line_and_restores_the_backups(tmp_path, capsys):
    full = char_node(tmp_path / "full", FULL)
    (tmp_path / "traj.h5md").write_bytes(b"earlier")
    assert main(["run", str(water_input(tmp_path, log=full))]) == 2
    one_error_line(capsys, full, "cannot write log (No space left on device)")
    assert_char_node(full)
    assert (tmp_path / "traj.h5md").read_bytes() == b"earlier"   # the run wrote nothing: rolled back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "md.toml", "traj.h5md"]


def test_run_log_that_fills_the_disk_mid_run_keeps_trajectory_and_checkpoint(tmp_path, capsys, monkeypatch):
    """The disk fills after the log's step-5 line: one line naming the log and the reason; the
    trajectory's frames (0, 5) and the step-5 checkpoint are readable."""
    import numdp.io.atomic as atomic   # LineFile: the log's writer

    class FillingLog:
        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            if self.fh.tell() > 0 and text.split()[:1] == ["10"]:   # the step-10 thermo line
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.fh.write(text)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    real_open = open
    monkeypatch.setattr(atomic, "open", lambda *a, **k: FillingLog(real_open(*a, **k)), raising=False)
    assert main(["run", str(water_input(tmp_path))]) == 2
    one_error_line(capsys, tmp_path / "log.txt", "cannot write log (No space left on device)")
    with h5py.File(tmp_path / "traj.h5md", "r") as h5:
        assert h5["particles/trajectory/position/step"][()].tolist() == [0, 5]
    assert read_checkpoint(tmp_path / "checkpoint.h5").step == 5


def test_run_log_in_a_folder_that_refuses_files_is_refused_before_the_run(tmp_path, capsys):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc")
    log = Path(f"/proc/numdp_test_{os.getpid()}.txt")
    assert main(["run", str(water_input(tmp_path, log=log))]) == 2
    line = one_error_line(capsys, log)
    assert "cannot create the output file" in line or "cannot write in the output directory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.toml"]


def test_run_outputs_into_null_devices_and_a_fifo_checkpoint_refused(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe")
    assert main(["run", str(water_input(tmp_path, checkpoint=tmp_path / "pipe"))]) == 2
    one_error_line(capsys, tmp_path / "pipe", "is a FIFO; an HDF5 checkpoint needs a regular file")
    assert_fifo(tmp_path / "pipe")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.toml", "pipe"]   # nothing written
    assert main(["run", str(water_input(tmp_path, trajectory=tmp_path / "pipe", format="h5md"))]) == 2
    one_error_line(capsys, tmp_path / "pipe", "is a FIFO; an HDF5 H5MD trajectory needs a regular file")
    assert_fifo(tmp_path / "pipe")
    for name in os.listdir(tmp_path):   # the refused run's other outputs (log, checkpoint)
        if name not in ("md.toml", "pipe"):
            os.unlink(tmp_path / name)
    nodes = [char_node(tmp_path / name, NULL) for name in ("n1", "n2", "n3")]
    assert main(["run", str(water_input(tmp_path, trajectory=nodes[0], format="h5md", log=nodes[1],
                                        checkpoint=nodes[2]))]) == 0
    for node in nodes:
        assert_char_node(node)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.toml", "n1", "n2", "n3", "pipe"]


def test_run_trajectory_on_a_full_device_is_one_line(tmp_path, capsys):
    full = char_node(tmp_path / "full", FULL)
    assert main(["run", str(water_input(tmp_path, trajectory=full, format="extxyz"))]) == 2
    one_error_line(capsys, full, "cannot write trajectory (No space left on device)")
    assert_char_node(full)


def test_run_checkpoint_on_a_full_device_names_the_checkpoint(tmp_path, capsys):
    """The checkpoint goes through the H5MD writer, whose message said 'H5MD trajectory'."""
    full = char_node(tmp_path / "full", FULL)
    assert main(["run", str(water_input(tmp_path, checkpoint=full))]) == 2
    one_error_line(capsys, full, "cannot write checkpoint (No space left on device)")
    assert_char_node(full)


# -- numdp train: lcurve.out ----------------------------------------------------------------------


def test_train_learning_curve_into_a_fifo_and_a_null_device(tmp_path, data_dir, capsys):  # noqa: F811
    path = make_input(tmp_path, data_dir, steps=4)
    reader = FifoReader(path.parent / "pipe")
    path.write_text(path.read_text().replace("[training]\n", '[training]\ndisp_file = "pipe"\n'))
    assert main(["train", str(path), "--threads", "1"]) == 0
    lines = reader.text().splitlines()
    assert reader.sessions == 1   # opened once: a reader would take a second open's data as a new file
    assert lines[0].startswith("#  step") and [int(ln.split()[0]) for ln in lines[1:]] == [1, 4]
    assert_fifo(path.parent / "pipe")
    null = char_node(path.parent / "null", NULL)
    path.write_text(path.read_text().replace('disp_file = "pipe"', 'disp_file = "null"'))
    assert main(["train", str(path), "--threads", "1"]) == 0
    assert_char_node(null)
    assert "backed up" in capsys.readouterr().out   # model and checkpoint: regular files, kept
    assert not any(p.name.startswith("#null") or p.name.startswith("#pipe") for p in path.parent.iterdir())


def test_train_learning_curve_on_a_full_device_is_one_line(tmp_path, data_dir, capsys):  # noqa: F811
    path = make_input(tmp_path, data_dir, steps=4)
    full = char_node(path.parent / "full", FULL)
    path.write_text(path.read_text().replace("[training]\n", '[training]\ndisp_file = "full"\n'))
    assert main(["train", str(path), "--threads", "1"]) == 2
    one_error_line(capsys, full, "cannot write learning curve (No space left on device)")
    assert_char_node(full)


def test_learning_curve_row_on_a_full_disk_names_the_file(tmp_path):
    lcurve = Lcurve(tmp_path / "lcurve.out", ["rmse_trn", "lr"])
    lcurve.row(0, [1.0, 1e-3])

    class Full:
        def write(self, text):
            return len(text)

        def flush(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            self.flush()

    lcurve._fh._fh.close()   # the LineFile's file object (numdp.io.atomic)
    lcurve._fh._fh = Full()
    with pytest.raises(InputError, match=r"lcurve.out: cannot write learning curve \(No space left on device\)"):
        lcurve.row(1, [1.0, 1e-3])
    lcurve.close()   # after the failure: nothing more to raise
    assert (tmp_path / "lcurve.out").read_text().splitlines()[1].split()[0] == "0"
