"""Tests for the survivors of the eighth round of mutation testing ("nothing is lost, bad input
gets a clear error": numdp.io.backup, numdp.io.atomic, numdp.io.series, numdp.signals,
numdp.progress, numdp.validate and numdp.config's checks, numdp.md.safety, numdp.io.h5md's
checkpoint and trajectory reading): each fails on one plausible mistake that the rest of the
suite let through (the mutant is named in the test's docstring; 2026-12-07).  No model and no
MD run: the helpers are called directly on files in tmp_path.
"""
from __future__ import annotations

import os
import stat

import pytest

from numdp.io.atomic import atomic_path
from numdp.io.backup import Backups, back_up, backup_name
from tests_util import input_error_message


# --------------------------------------------------------------------------------------------------
# numdp.io.backup: the first free number, never an existing backup; nothing renamed over a file
# --------------------------------------------------------------------------------------------------


def test_backup_skips_every_taken_number(tmp_path):
    """Mutant `if` for `while` in back_up's search of a free number (only #name.1# looked at:
    with #name.1# and #name.2# taken, the file is renamed over #name.2#, losing it).  Backups
    1 and 2 exist: the file becomes #name.3# and both earlier backups keep their contents."""
    out = tmp_path / "log.txt"
    for n in (1, 2):
        backup_name(out, n).write_text(f"run {n}")
    out.write_text("run 3")
    assert back_up([out]) == [(out, backup_name(out, 3))]
    assert [backup_name(out, n).read_text() for n in (1, 2, 3)] == ["run 1", "run 2", "run 3"]


def test_restore_leaves_a_name_that_something_else_holds(tmp_path):
    """Mutant `if True` for `if not os.path.lexists(old)` in _rename_back (the backup renamed over
    whatever holds its old name now).  The failed run left a symbolic link at the output's name,
    which restore() does not remove (only regular files the run made): the backup stays under
    #name.1# with its contents, and the link stays as it was."""
    out, other = tmp_path / "traj.txt", tmp_path / "other.txt"
    out.write_text("previous run")
    other.write_text("someone else's")
    try:
        with Backups.move([out]):
            out.symlink_to(other)
            raise RuntimeError("the run fails before its first frame")
    except RuntimeError:
        pass
    assert out.is_symlink() and out.read_text() == "someone else's"
    assert backup_name(out, 1).read_text() == "previous run"


# --------------------------------------------------------------------------------------------------
# numdp.io.atomic: the data is on disk before the rename, and the rename before the block returns
# --------------------------------------------------------------------------------------------------


def test_atomic_path_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """Mutants: `_fsync(tmp)` removed (the rename may reach the disk before the data: a crash
    leaves an empty or partial file at the output's name) and the directory's fsync removed (the
    rename itself may be lost).  os.fsync and os.replace are recorded: an fsync of the new file
    (by inode) comes before os.replace, and one of the output's folder after it."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", stat.S_ISDIR(st.st_mode), st.st_ino))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", False, os.stat(src).st_ino))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("data")
    monkeypatch.undo()
    file_ino, dir_ino = os.stat(target).st_ino, os.stat(tmp_path).st_ino
    at = events.index(("replace", False, file_ino))
    assert ("fsync", False, file_ino) in events[:at]
    assert ("fsync", True, dir_ino) in events[at + 1:]


# --------------------------------------------------------------------------------------------------
# numdp.io.series: a file of the series is the pattern with digits for the mark, nothing more
# --------------------------------------------------------------------------------------------------


def test_series_files_match_the_whole_name(tmp_path):
    """Mutant: the `\\Z` dropped from the series' pattern (a name that only starts like a file of
    the series counts: `read_restart ck.*` would take a user's copy ck.12.bak, and a new run
    would back it up as one of its files).  ck.5 and ck.12.h5 are files of `ck.*.h5`;
    ck.30.h5.bak and ck.40.h5x are not: the latest is ck.12.h5."""
    from numdp.io.series import latest_file, series_files

    for name in ("ck.5.h5", "ck.12.h5", "ck.30.h5.bak", "ck.40.h5x"):
        (tmp_path / name).write_text(name)
    assert series_files(tmp_path / "ck.*.h5") == [tmp_path / "ck.5.h5", tmp_path / "ck.12.h5"]
    assert latest_file(tmp_path / "ck.*.h5") == tmp_path / "ck.12.h5"
    (tmp_path / "restart.7").write_text("")
    (tmp_path / "restart.9~").write_text("")   # an editor's backup
    assert latest_file(tmp_path / "restart.*") == tmp_path / "restart.7"


def test_series_mark_only_in_the_file_name_and_only_files_count(tmp_path):
    """Mutants: `MARK in str(path)` for `MARK in Path(path).name` in is_series (a folder whose name
    holds a `*` makes every file in it a series: series_files then splits a name without the mark
    and fails) and `p.is_file() and` dropped in _steps (a folder ck.20 is taken as the latest
    checkpoint of `ck.*`).  The module's docstring: the mark stands for the step in the file name;
    one file per step."""
    from numdp.io.series import is_series, latest_file, series_file, series_files

    odd = tmp_path / "runs*" / "traj.h5"
    odd.parent.mkdir()
    odd.write_text("")
    assert not is_series(odd) and series_file(odd, 7) == odd and series_files(odd) == []
    (tmp_path / "ck.10").write_text("")
    (tmp_path / "ck.20").mkdir()
    assert series_files(tmp_path / "ck.*") == [tmp_path / "ck.10"]
    assert latest_file(tmp_path / "ck.*") == tmp_path / "ck.10"


# --------------------------------------------------------------------------------------------------
# numdp.signals: a closed stdout after a signal keeps its status; SIGTERM's status is 143
# --------------------------------------------------------------------------------------------------


def _request():
    """A StopRequest whose abort is recorded instead of ending the process (os._exit)."""
    from numdp.signals import StopRequest

    req = StopRequest("run", announce=False)
    req.aborts = []
    req.abort = req.aborts.append
    return req


def test_a_closed_stdout_after_a_signal_keeps_the_signals_status():
    """Mutant `if True` for `if self._first is None` in StopRequest.stdout_closed (a closed stdout
    after Ctrl-C taken as the first request: status 141 and the stop line moved to stderr instead
    of 130).  SIGINT first, then the closed stdout: the request stays SIGINT's, and the status
    given to the command's exception is 128 + 2."""
    import signal

    req = _request()
    exc = KeyboardInterrupt("stopped")
    try:
        with req:
            req._handler(signal.SIGINT, None)
            req.stdout_closed()
            raise exc
    except KeyboardInterrupt:
        pass
    assert req.signum == signal.SIGINT and not req.by_closed_stdout
    assert exc.signal_status == 130 and req.aborts == []


def test_sigterm_interrupts_with_status_143():
    """Mutant `EXIT_STATUS` (130, SIGINT's) for `128 + signal.SIGTERM` in sigterm_interrupts' handler
    (numdp ipi killed by a batch system's SIGTERM would report Ctrl-C's status).  The module
    docstring: the status is the shell's for a process that the signal ends, 128 + 15; the previous
    handler is back after the block."""
    import signal

    from numdp.signals import sigterm_interrupts

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as exc:
        with sigterm_interrupts():
            signal.raise_signal(signal.SIGTERM)
    assert exc.value.signal_status == 143 and "SIGTERM" in str(exc.value)
    assert signal.getsignal(signal.SIGTERM) is before


# --------------------------------------------------------------------------------------------------
# numdp.progress: a restart's elapsed time includes the earlier part; h:mm:ss rounds
# --------------------------------------------------------------------------------------------------


def test_progress_elapsed_counts_the_earlier_part_and_rounds():
    """Mutants: `hms(now - self.t0)` for `hms(self.elapsed0 + now - self.t0)` in Progress.text (a
    restarted run's elapsed time restarts from 0) and `int(seconds)` for `int(round(seconds))` in
    hms (59.6 s shown as 0:59).  A run restarted at step 50 after 3600 s: 5 s later at step 51
    the line shows elapsed 1:00:05; hms rounds to the nearest second."""
    import io

    from numdp.progress import Progress, hms

    now = [0.0]
    out = io.StringIO()
    p = Progress(50, 100, "lines", out, elapsed0=3600.0, clock=lambda: now[0])
    now[0] = 5.0
    p.update(51, line=True)
    assert "elapsed 1:00:05" in out.getvalue()
    assert hms(59.6) == "1:00" and hms(3599.6) == "1:00:00" and hms(0.4) == "0:00"


# --------------------------------------------------------------------------------------------------
# numdp.validate: a limit is inclusive and holds at both ends of a ramp; inputs compared resolved
# --------------------------------------------------------------------------------------------------


def test_a_limit_admits_its_value_and_binds_both_ends_of_a_ramp():
    """Mutants: `v >= maximum.value` for `v > maximum.value` in Table._check_maximum (a key set to
    its documented largest value refused: the message says "must be <= 10") and `v[0]` for
    `max(v)` in Table.ramp (a ramp ending beyond the limit accepted).  A limit of 10 K: 10 and
    [0, 10] are accepted, 10.5 and [5, 1e300] refused naming the key."""
    from numdp.validate import Limit, Table

    limit = Limit(10.0, " K", "a test's limit")
    t = Table("in.toml", "md", {"a": 10, "b": 10.5, "r": [0, 10], "s": [5, 1e300]})
    assert t.number("a", maximum=limit) == 10.0
    assert t.ramp("r", positive=True, zero_end=True, maximum=limit) == (0.0, 10.0)
    assert input_error_message(t.number, "b", maximum=limit).startswith(
        "in.toml: [md] b: must be <= 10 K (a test's limit)")
    assert input_error_message(t.ramp, "s", positive=True, maximum=limit).startswith("in.toml: [md] s: must be <= 10 K")


def test_an_output_on_an_input_is_found_through_the_path_spelling(tmp_path):
    """Mutant `Path(path)` for `Path(path).resolve()` in distinct_files' inputs (an input spelt
    with `..` or relative to another folder is not recognised, and a new run backs the input up
    away).  The same file spelt two ways: refused, naming the output, the input and the file."""
    from numdp.validate import distinct_files

    (tmp_path / "sub").mkdir()
    data = tmp_path / "sub" / ".." / "start.data"
    out = tmp_path / "start.data"
    text = input_error_message(distinct_files, "md.toml", [("[output] trajectory", out)], [("[system] file", data)])
    assert text == (f"md.toml: [output] trajectory: names the same file as an input, [system] file ({out}); "
                    "give each output its own file")


# --------------------------------------------------------------------------------------------------
# numdp.config: one element names a whole lattice; a barostat's tau is named as the barostat's
# --------------------------------------------------------------------------------------------------

RUN = """
[model]
file = "model.h5"
[system]
SYSTEM
[md]
timestep = 0.0005
steps = 100
ensemble = "npt"
thermostat = { kind = "nose-hoover", temperature = 330.0, tau = 0.1 }
barostat = { kind = "mtk", pressure = 1.0, tau = BTAU }
[neighbor]
skin = 2.0
"""


def _settings(tmp_path, system='file = "start.xyz"', btau="1.0"):
    from numdp.config import load_run_settings

    path = tmp_path / "md.toml"
    path.write_text(RUN.replace("SYSTEM", system).replace("BTAU", btau))
    return load_run_settings(path)


def test_one_element_names_every_atom_of_a_lattice(tmp_path):
    """Mutant `len(elements) != nbasis` for `len(elements) not in (1, nbasis)` in _lattice (fcc
    copper written elements = ["Cu"], as the key's message itself suggests, refused).  One name
    or one per basis atom (4 for fcc) is accepted; 2 names are refused naming the key."""
    lattice = 'lattice = { style = "fcc", a = 3.6, cells = [2, 2, 2], elements = ELEMENTS }'
    assert _settings(tmp_path, lattice.replace("ELEMENTS", '["Cu"]')).system.lattice.elements == ("Cu",)
    four = _settings(tmp_path, lattice.replace("ELEMENTS", '["Cu", "Au", "Au", "Au"]')).system.lattice
    assert four.elements == ("Cu", "Au", "Au", "Au")
    message = input_error_message(_settings, tmp_path, lattice.replace("ELEMENTS", '["Cu", "Au"]'))
    assert message.startswith("md.toml: [system] lattice.elements: expected one element name for every atom, "
                              "or one per basis atom of fcc (4)")


def test_a_barostats_weak_coupling_names_the_barostat(tmp_path):
    """Mutant `"thermostat.tau"` for `f"{name}.tau"` in _md's coupling check (a barostat tau of
    more than COUPLING_STEPS_MAX = 1e12 timesteps reported as the thermostat's).  tau = 5e9 ps at
    a 0.0005 ps timestep is 1e13 timesteps: refused naming [md] barostat.tau."""
    assert _settings(tmp_path).md.barostat.tau == 1.0
    message = input_error_message(_settings, tmp_path, btau="5e9")
    assert message.startswith("md.toml: [md] barostat.tau: must be <= 1e+12 timesteps")


def test_fire_limits_admit_their_bounds(tmp_path):
    """Mutant `m.dtgrow <= 1.0` for `m.dtgrow < 1.0` in _minimize (LAMMPS' MinFire::init refuses
    dtgrow < 1 only: a FIRE that never grows its timestep, dtgrow = 1, refused).  dtgrow = 1,
    dtshrink = 1, alpha0 = 1, alphashrink = 1 and tmax = tmin are accepted; dtgrow = 0.99 is
    refused naming the key."""
    from numdp.config import load_run_settings

    text = ('[model]\nfile = "m.h5"\n[system]\nfile = "start.xyz"\n[minimize]\nsteps = 10\nKEYS\n'
            "[neighbor]\nskin = 1.0\n")
    path = tmp_path / "min.toml"
    path.write_text(text.replace("KEYS", "dtgrow = 1.0\ndtshrink = 1.0\nalpha0 = 1.0\nalphashrink = 1.0\n"
                                         "tmax = 0.5\ntmin = 0.5"))
    m = load_run_settings(path).minimize
    assert (m.dtgrow, m.dtshrink, m.alpha0, m.alphashrink, m.tmax, m.tmin) == (1.0, 1.0, 1.0, 1.0, 0.5, 0.5)
    path.write_text(text.replace("KEYS", "dtgrow = 0.99"))
    assert input_error_message(load_run_settings, path) == "min.toml: [minimize] dtgrow: must be >= 1, got 0.99"


def test_an_empty_type_name_is_refused(tmp_path):
    """Mutant: `and n` dropped from _system's type_names check (["O", ""] accepted: the second
    type then names no element, and a model's type_map cannot match it).  Refused naming the key;
    ["O", "H"] is accepted."""
    assert _settings(tmp_path, 'file = "start.xyz"\ntype_names = ["O", "H"]').system.type_names == ["O", "H"]
    assert input_error_message(_settings, tmp_path, 'file = "start.xyz"\ntype_names = ["O", ""]').startswith(
        "md.toml: [system] type_names: expected a list of element names")


# --------------------------------------------------------------------------------------------------
# numdp.md.safety: a non-finite velocity component or force, or a move of atom 0, names its atom
# --------------------------------------------------------------------------------------------------


def test_one_nonfinite_velocity_component_names_its_atom():
    """Mutant `.any(axis=1)` for `.all(axis=1)` in SafetyMonitor.nonfinite_velocity_atom (an atom is
    named only when all three components are non-finite: an atom with one nan component is missed
    or another atom named).  Atom 1 has vy = nan, atom 3 all three inf: atom 1 is the first; with
    finite velocities, -1."""
    from types import SimpleNamespace

    import numpy as np

    from numdp.md.safety import SafetyMonitor

    v = np.zeros((4, 3))
    v[1, 1] = np.nan
    v[3] = np.inf
    monitor = SafetyMonitor(0.0, 1.0)
    assert monitor.nonfinite_velocity_atom(SimpleNamespace(velocities=v)) == 1
    assert monitor.nonfinite_velocity_atom(SimpleNamespace(velocities=np.zeros((4, 3)))) == -1


class _Provider:
    """The parts of a force provider that SafetyMonitor.local_problem reads."""

    closest = (float("inf"), -1, -1)
    step_displacement = (0.0, -1)

    def nonfinite_force_atom(self, state):
        return -1

    def atom_label(self, j):
        return int(j), 0


def test_a_move_beyond_the_skin_names_atom_zero_too():
    """Mutant `k > 0` for `k >= 0` in SafetyMonitor.local_problem (the first local atom, index 0,
    never reported when it moves more than the skin).  Atom index 0 (global id 10) moved 2 A
    with a 1 A skin: the message names it; at 0.5 A there is no problem."""
    from types import SimpleNamespace

    import numpy as np

    from numdp.md.safety import SafetyMonitor

    state = SimpleNamespace(step=3, potential_energy=-1.0, forces=np.zeros((2, 3)), velocities=np.zeros((2, 3)),
                            ids=np.array([10, 11]), types=np.array([0, 0]), type_map=["Ar"])
    provider = _Provider()
    monitor = SafetyMonitor(0.0, 1.0)
    provider.step_displacement = (2.0, 0)
    assert monitor.local_problem(state, provider) == (
        "step 3: atom 10 (Ar) moved 2.0000 A in one step, more than the neighbour skin 1.0 A (reduce [md] timestep)")
    provider.step_displacement = (0.5, 0)
    assert monitor.local_problem(state, provider) is None


def test_a_nonfinite_force_is_found_in_the_forces():
    """Mutant `state.velocities` for `state.forces` in ForceProvider.nonfinite_force_atom (the CPU
    safety check of forces looking at the wrong array: a nan force from the model goes unreported
    until it has spoilt the velocities a step later).  Atom 2 has a nan force and finite velocity,
    atom 0 an inf velocity and a finite force: the force check names atom 2, and the message
    SafetyMonitor builds from it names that atom's id and force."""
    from types import SimpleNamespace

    import numpy as np

    from numdp.md.forces import ForceProvider
    from numdp.md.safety import SafetyMonitor

    f, v = np.zeros((3, 3)), np.zeros((3, 3))
    f[2, 0] = np.nan
    v[0] = np.inf
    state = SimpleNamespace(step=1, potential_energy=-1.0, forces=f, velocities=v,
                            ids=np.array([5, 6, 7]), types=np.array([0, 0, 0]), type_map=["Ar"])
    assert ForceProvider.nonfinite_force_atom(None, state) == 2

    class Provider(_Provider):
        def nonfinite_force_atom(self, state):
            return ForceProvider.nonfinite_force_atom(self, state)

    assert SafetyMonitor(0.0, 1.0).local_problem(state, Provider()) == (
        "step 1: atom 7 (Ar) has a non-finite force [nan, 0.0, 0.0]")


# --------------------------------------------------------------------------------------------------
# numdp.io.h5md: a resumed trajectory's clock is cut with its frames; a damaged checkpoint is named
# --------------------------------------------------------------------------------------------------


def test_resume_cuts_the_time_with_the_steps(tmp_path):
    """Mutant: `self.clock[1].resize(keep, axis=0)` removed from H5MDWriter._open_existing (a
    restart from step 10 of a 5-frame trajectory left 5 times for 3 frames when it stopped before
    writing a frame: H5MD's step, time and value must have one row per frame).  After the resume
    and no new frame, every element's step and time have 3 rows: steps 0, 5, 10 at 0, 0.5, 1 ps."""
    import h5py
    import numpy as np

    from numdp.io.h5md import H5MDWriter

    path = tmp_path / "t.h5md"
    w = H5MDWriter(path, [0, 1], [16.0, 1.0], ["O", "H"], ("position",))
    for k in range(5):
        w.append(5 * k, 0.5 * k, np.full((2, 3), float(k)), None, None, np.eye(3) * 10, {})
    w.close()
    H5MDWriter(path, [0, 1], [16.0, 1.0], ["O", "H"], ("position",), resume_after=10).close()
    with h5py.File(path, "r") as f:
        pos = f["particles/trajectory/position"]
        assert pos["value"].shape[0] == 3
        assert pos["step"][()].tolist() == [0, 5, 10] and pos["time"][()].tolist() == [0.0, 0.5, 1.0]


def test_a_checkpoint_with_a_short_per_atom_dataset_is_named_damaged(tmp_path):
    """Mutant `if False` for the shape check of CheckpointAtoms' per-atom datasets (a checkpoint
    whose velocities hold fewer rows than its positions, as a damaged or hand-cut file does, read
    as if the velocities were a global field).  One line naming the file and the dataset."""
    import h5py
    import numpy as np

    from numdp.errors import InputError
    from numdp.io.h5md import read_checkpoint, write_checkpoint
    from numdp.system import State

    n = 4
    rng = np.random.default_rng(1)
    state = State(positions=rng.normal(size=(n, 3)), velocities=rng.normal(size=(n, 3)),
                  types=np.zeros(n, np.int32), masses=np.ones(n), box=np.eye(3) * 10.0, type_map=["A"],
                  ids=np.arange(n, dtype=np.int64), step=7, forces=np.zeros((n, 3)), virial=np.zeros((3, 3)),
                  potential_energy=0.0)
    path = tmp_path / "ck.h5"
    write_checkpoint(path, state, {})
    assert read_checkpoint(path).step == 7
    with h5py.File(path, "a") as f:
        v = f["numdp/state/velocities"][()]
        del f["numdp/state/velocities"]
        f["numdp/state/velocities"] = v[:3]
    with pytest.raises(InputError) as exc:
        read_checkpoint(path)
    assert str(exc.value) == (f"{path}: /numdp/state/velocities has shape (3, 3), not one row for each of the 4 "
                              "atoms of positions (a damaged checkpoint)")


def test_frame_minus_n_is_the_first_frame(tmp_path):
    """Mutant `-nframes < frame` for `-nframes <= frame` in frame_of (frame -N of an N-frame file,
    the first one as Python indexes it, refused).  Of 3 frames, -3 is step 0 and 0 is too; -4 and
    3 are refused naming the file and the count."""
    import numpy as np

    from numdp.errors import InputError
    from numdp.io.h5md import H5MDWriter, read_frame

    path = tmp_path / "t.h5md"
    w = H5MDWriter(path, [0, 1], [16.0, 1.0], ["O", "H"], ("position",))
    for k in range(3):
        w.append(5 * k, 0.5 * k, np.full((2, 3), float(k)), None, None, np.eye(3) * 10, {})
    w.close()
    assert read_frame(path, -3)["step"] == read_frame(path, 0)["step"] == 0
    assert read_frame(path, -1)["step"] == 10
    for bad in (-4, 3):
        with pytest.raises(InputError, match=rf"t.h5md: frame {bad} does not exist \(the file has 3 frames\)"):
            read_frame(path, bad)
