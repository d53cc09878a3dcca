"""Findings of a sweep of `numdp run` as a LAMMPS / DeePMD-kit user runs it (fast checks)."""
from __future__ import annotations

from numdp.md.loop import RunResult, Timers, summary_lines


def _neighbour_line(**kw) -> str:
    r = RunResult(natoms=108, timestep=0.002, timers=Timers(total=1.0), overflow_calls=0, **kw)
    return next(line for line in summary_lines(r, 1) if line.startswith("Neighbour list:"))


def test_the_rebuild_rate_counts_the_builds_made_during_the_steps():
    """A restart restores its neighbour list from the checkpoint without a build: 5 builds in
    100 steps are one per 20 steps (the summary said one per 25, taking one build for the set-up),
    and none in 20 steps is none (it said '0 builds (one per 20.0 steps)')."""
    assert _neighbour_line(steps=100, rebuilds=5, loop_rebuilds=5) == \
        "Neighbour list: 5 builds (one per 20.0 steps)"
    assert _neighbour_line(steps=20, rebuilds=0, loop_rebuilds=0) == \
        "Neighbour list: 0 builds (none during the 20 steps)"
    # a new run: one build in its set-up, 4 during the 100 steps
    assert _neighbour_line(steps=100, rebuilds=5, loop_rebuilds=4) == \
        "Neighbour list: 5 builds (one per 25.0 steps)"
    assert _neighbour_line(steps=100, rebuilds=1, loop_rebuilds=0) == \
        "Neighbour list: 1 build (none during the 100 steps)"


def test_a_slab_reports_no_volume():
    """docs/md.md: without a cell periodic along a, b and c the pressure, volume, density and
    enthalpy are nan.  A slab's `vol` column printed the cell's volume (arbitrary along the open
    vector) and its H5MD trajectory had a `volume` observable; both are gone, and a fully
    periodic cell still reports |det h|."""
    import math

    import numpy as np
    import pytest

    from numdp.md import thermo
    from numdp.md.reporters import snapshot
    from numdp.system import State

    def state(pbc):
        rng = np.random.default_rng(0)
        return State(positions=rng.uniform(0, 5, (4, 3)), velocities=rng.normal(size=(4, 3)),
                     types=np.zeros(4, dtype=np.int32), masses=np.full(4, 39.948),
                     box=np.diag([5.0, 6.0, 7.0]), type_map=["Ar"], ids=np.arange(4), pbc=pbc,
                     virial=np.eye(3), potential_energy=-1.0, forces=np.zeros((4, 3)))

    slab = snapshot(state((True, True, False)))
    assert math.isnan(slab.vol) and math.isnan(slab.press) and "volume" not in slab.observables()
    assert all(math.isnan(v) for v in thermo.values(slab, ["vol", "density", "enthalpy", "press", "pzz"]))
    assert thermo.values(slab, ["lz"]) == [7.0]   # the box columns stay
    bulk = snapshot(state((True, True, True)))
    assert bulk.vol == pytest.approx(210.0, rel=1e-14) and math.isfinite(bulk.press)
    assert bulk.observables()["volume"] == bulk.vol


def test_a_slab_trajectory_has_no_volume_observable(tmp_path):
    import h5py
    import numpy as np

    from numdp.io.h5md import H5MDWriter

    for pbc, has_volume in (((True, True, False), False), ((True, True, True), True)):
        path = tmp_path / f"{has_volume}.h5md"
        w = H5MDWriter(path, [0, 0], [39.948, 39.948], ["Ar"], periodic=pbc)
        w.append(0, 0.0, np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), np.eye(3) * 5.0, {"volume": 125.0})
        w.close()
        with h5py.File(path, "r") as f:
            assert ("volume" in f["observables"]) == has_volume
            assert "edges" in f["particles/trajectory/box"]
            assert list(f["particles/trajectory/box"].attrs["boundary"]) == ["periodic" if p else "none" for p in pbc]


def test_a_restart_with_nothing_to_run_leaves_the_trajectory_alone(tmp_path):
    """`--restart` from an older checkpoint (step 20) with [md] steps at or below its step runs
    nothing ('nothing to run', exit 0); it cut the trajectory, which went on to step 60, back to
    step 20 all the same (the frames of a run that was not made: 40 steps of output lost)."""
    import shutil

    import h5py

    from test_md_run import argon_dir, run

    toml = argon_dir(tmp_path, KIND="csvr", **{"steps = 60": "steps = 20"})
    run(toml)
    shutil.copy(tmp_path / "ck.h5", tmp_path / "ck20.h5")
    toml.write_text(toml.read_text().replace("steps = 20", "steps = 60"))
    run(toml, restart=tmp_path / "ck.h5")
    before = (tmp_path / "traj.h5md").read_bytes()
    for steps in (10, 20):
        toml.write_text(toml.read_text().replace("steps = 60", f"steps = {steps}").replace("steps = 10", f"steps = {steps}"))
        assert run(toml, restart=tmp_path / "ck20.h5") is None
        assert (tmp_path / "traj.h5md").read_bytes() == before
    with h5py.File(tmp_path / "traj.h5md", "r") as f:
        assert f["particles/trajectory/position/step"][-1] == 60
    assert "nothing to run: the state is at step 20, [md] steps = 20" in (tmp_path / "log.txt").read_text()


def test_the_neighbour_record_names_the_grid_of_the_run_that_holds_it():
    """A checkpoint's neighbour record carries the MPI grid, which a restart on as many ranks takes
    again (numdp.md.setup).  A restart restores the recorded list without a build, so the record
    read from the checkpoint (here of a run on 2 x 1 x 1 ranks) must name this run's grid from then
    on: else a checkpoint written before the next build would pass the old run's grid on."""
    import numpy as np

    from numdp.md.forces import ForceProvider
    from test_md_potential import LennardJones, argon_state

    st = argon_state(cells=2, a=5.3, seed=3)
    ForceProvider(LennardJones(), 1.0)(st)
    assert st.neighbor["grid"].tolist() == [1.0, 1.0, 1.0]
    st.neighbor["grid"] = np.array([2.0, 1.0, 1.0])   # as read from a two-rank run's checkpoint
    restarted = ForceProvider(LennardJones(), 1.0)
    restarted(st)
    assert restarted.rebuilds == 0   # the recorded list, restored
    assert st.neighbor["grid"].tolist() == [1.0, 1.0, 1.0]


def test_the_signal_line_names_the_command_that_runs(monkeypatch):
    """`numdp lmp` runs through numdp run's main: the one line of a signal outside the steps
    (abort_on_signal, installed by create_world) must name numdp lmp, as its error lines do."""
    import argparse

    import pytest

    import numdp.parallel.world as pw
    from numdp.commands import run
    from numdp.errors import InputError

    seen = []

    def world(environ=None, command="run"):
        seen.append(command)
        return pw.World(None)

    def load(world):
        raise InputError("stop here")

    monkeypatch.setattr(pw, "create_world", world)
    with pytest.raises(InputError, match="stop here"):
        run.main(argparse.Namespace(command="lmp", restart=None), load)
    assert seen == ["lmp"]
