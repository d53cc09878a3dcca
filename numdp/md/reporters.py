"""Reporters: each says at which steps it wants a snapshot and what it does with it (OpenMM style).

The loop builds one `Snapshot` (thermodynamic values of the current state) per step that any
reporter wants and hands it to all of them.  Formats live in writers (numdp.io.trajectory, numdp.io.h5md); the
reporters only decide when to call them.

On several MPI ranks every rank runs the same reporters at the same steps: thermodynamic values
are global reductions, per-atom output reaches rank 0 in global id order block by block
(`Snapshot.atoms`, numdp.parallel.distribute.GlobalAtoms: collective; rank 0 holds one block at a
time, not the whole system), and only rank 0 prints and writes files.

A file that cannot be written during the run (disk full, a device such as /dev/full) ends it
with InputError naming the file and the OS's reason; the loop then closes the reporters: the
trajectory keeps the frames written before, the last checkpoint stays (written atomically).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.atomic import LineFile, cannot_write, special_target
from ..io.h5md import DEFAULT_FORCE_UNIT, FIELDS, write_checkpoint
from ..io.series import series_file
from ..io.trajectory import FIELD_ARRAYS, Frame, TrajectoryWriter
from ..parallel.distribute import GlobalAtoms
from . import thermo
from ..parallel.world import World
from ..progress import Progress
from ..signals import StdoutGuard
from ..system import State, kinetic_energy, kinetic_tensor, pressure, temperature
from ..units import EV_PER_A3_TO_BAR
from .minimize import force_norms_global


@dataclass
class Snapshot:
    """Thermodynamic values of `state` at its current step (eV, K, bar, Å³, ps); press and vol
    are nan without a cell periodic along all three vectors.

    econs: total energy plus the energy the thermostat took out, plus with the MTK barostat its
    own energy (K_b + P0 V + its chain's): constant up to integration error in NVE, NVT and MTK
    NPT; stochastic cell rescaling's work is not included.  state: this rank's State.
    """

    state: State
    step: int
    time: float
    temp: float
    pe: float
    ke: float
    etotal: float
    press: float
    vol: float
    econs: float
    world: World | None = None
    _pressure_tensor: np.ndarray | None = field(default=None, repr=False)   # `pressure_tensor`'s cache

    def atoms(self, names: tuple[str, ...] | None = None) -> GlobalAtoms:
        """The per-atom arrays `names` (default: all) of every rank in global id order, block by
        block (`GlobalAtoms.blocks` is collective)."""
        return GlobalAtoms(self.world or World(None), self.state, names)

    def position_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) (3,) Å of all ranks' positions.  Collective."""
        world = self.world or World(None)
        pos = self.state.positions
        lo = pos.min(axis=0) if len(pos) else np.full(3, np.inf)
        hi = pos.max(axis=0) if len(pos) else np.full(3, -np.inf)
        return (np.array([-world.max_global(-float(v)) for v in lo]),
                np.array([world.max_global(float(v)) for v in hi]))

    def pressure_tensor(self) -> np.ndarray:
        """(3, 3) bar: (Σ m v vᵀ + W) / V in the frame of the state's positions, nan without a
        cell periodic along all three vectors.  Collective (the kinetic part sums over the ranks)."""
        if self._pressure_tensor is None:
            st = self.state
            kinetic = (self.world or World(None)).sum_global(kinetic_tensor(st.velocities, st.masses))
            if math.isfinite(self.vol):
                p = (np.asarray(kinetic, dtype=np.float64) + st.virial) / self.vol * EV_PER_A3_TO_BAR
            else:
                p = np.full((3, 3), math.nan)
            self._pressure_tensor = p
        return self._pressure_tensor

    def observables(self) -> dict:
        """Values for the trajectory's observables (numdp.io.h5md.OBSERVABLES): floats, and the
        virial (3, 3) eV and the pressure tensor (3, 3) bar.  Collective (`pressure_tensor`)."""
        out = {"potential_energy": self.pe, "kinetic_energy": self.ke, "total_energy": self.etotal,
               "conserved_energy": self.econs, "temperature": self.temp, "pressure": self.press}
        if math.isfinite(self.vol):
            out["volume"] = self.vol
        if self.state.virial is not None:
            out["virial"] = np.array(self.state.virial, dtype=np.float64)
        out["pressure_tensor"] = self.pressure_tensor()
        return out


def snapshot(state: State, thermostat=None, world: World | None = None, barostat=None) -> Snapshot:
    """Compute the thermodynamic values of the whole system (needs state.virial and
    potential_energy, which are global already); econs adds the thermostat's and the
    barostat's reservoir energies (the MTK barostat's K_b + P0 V + chain; 0 for stochastic
    cell rescaling).  Collective."""
    world = world if world is not None else World(None)
    ke = world.sum_global(kinetic_energy(state.velocities, state.masses))
    # no volume and no pressure without a cell periodic along all three vectors (a slab's cell
    # volume is arbitrary: its length along an open vector is any number, e.g. 1 A for a 2D cell)
    periodic = state.box is not None and all(state.pbc_flags)
    vol = state.volume if periodic else math.nan
    press = pressure(ke, state.virial, vol) * EV_PER_A3_TO_BAR if periodic else math.nan
    etotal = state.potential_energy + ke
    reservoir = thermostat.reservoir_energy(state) if thermostat is not None else 0.0
    if barostat is not None:
        reservoir += barostat.reservoir_energy(state)
    return Snapshot(state, state.step, state.time, temperature(ke, state.dof), state.potential_energy, ke,
                    etotal, press, vol, etotal + reservoir, world)


class Console:
    """Lines for the screen (stdout) and the log file; keeps the progress bar out of their way.
    enabled=False (MPI ranks other than 0): prints and writes nothing.  A log that cannot be
    opened or written raises InputError naming it; after a failed write the lines go to the
    screen only.  A closed stdout (`numdp run ... | head`) asks the run to stop after its step
    (numdp.signals.StdoutGuard); the lines then go to the log only."""

    def __init__(self, log_path=None, resume: bool = False, screen=None, progress: Progress | None = None,
                 enabled: bool = True):
        self.enabled = enabled
        self.screen = StdoutGuard(screen)   # None: sys.stdout at each line
        self.progress = progress
        self.log = None
        if log_path is not None and enabled:
            self.log = LineFile(log_path, "log", "a" if resume else "w")

    def line(self, text: str) -> None:
        """A line for the screen and the log."""
        if not self.enabled:
            return
        self.screen_line(text)
        if self.log is not None:
            self.log.write(text + "\n")   # after a refused write, the lines go to the screen only

    def screen_line(self, text: str) -> None:
        """A line for the screen only: a notice about the process, such as Numba compiling kernels,
        that would otherwise split the log's thermo block (LAMMPS' log of the same run has none)."""
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.clear()
        self.screen.write(text + "\n")
        self.screen.flush()

    def close(self) -> None:
        if self.log is not None:
            log, self.log = self.log, None
            log.close()


class ThermoReporter:
    """LAMMPS-like thermo lines, by default step time temp pe ke etotal press vol (ps, K, eV, bar,
    Å³); `columns`: LAMMPS thermo keywords (numdp.md.thermo); `origin`: LAMMPS' box corner that
    xlo ... zhi are from (numdp.io.trajectory.BoxOrigin; None: 0).  `report` is collective."""

    def __init__(self, every: int, console: Console, columns=thermo.DEFAULT_COLUMNS, header: str = "keywords",
                 world: World | None = None, origin=None):
        self.origin = origin
        self.every = int(every)
        self.console = console
        self.columns = tuple(columns)
        self.style = header   # thermo.HEADERS
        self.world = world if world is not None else World(None)

    def wants(self, step: int) -> bool:
        return step % self.every == 0

    def start(self) -> None:
        """The header (collective with LAMMPS' titles: the memory line before it)."""
        if self.style == "lammps":
            self.console.line(thermo.memory_line(self.world))
        self.console.line(thermo.header(self.columns, self.style))

    def report(self, s: Snapshot) -> None:
        self.console.line(thermo.line(self.columns, thermo.values(s, self.columns, self.origin), self.style))

    def close(self) -> None:
        pass


class MinimizeThermoReporter(ThermoReporter):
    """Thermo lines of an energy minimization: by default (`columns` None) step pe fnorm fmax (eV,
    eV/Å, eV/Å): the potential energy, the 2-norm of the global force vector and its largest
    component (LAMMPS' thermo keywords fnorm and fmax; reductions over the ranks, collective);
    with `columns` (thermo keywords, numdp.md.thermo) those, as an MD run's, of the state at rest
    (LAMMPS prints thermo_style's columns during a minimize too: numdp lmp)."""

    HEADER = f"{'step':>10} {'pe':>16} {'fnorm':>14} {'fmax':>14}"

    def __init__(self, every: int, console: Console, columns=None, header: str = "keywords",
                 world: World | None = None, origin=None):
        super().__init__(every, console, () if columns is None else columns, header, world, origin)
        self.own = columns is None

    def start(self) -> None:
        if self.own:
            self.console.line(self.HEADER)
        else:
            super().start()

    def report(self, s: Snapshot) -> None:
        if not self.own:
            super().report(s)
            return
        norms = force_norms_global(s.state.forces, s.world)
        self.console.line(f"{s.step:>10d} {s.pe:>16.6f} {norms.two:>14.6g} {norms.component:>14.6g}")


class TrajectoryReporter:
    """Appends a frame to the trajectory every `every` steps.

    writer: the TrajectoryWriter (H5MD, extxyz or LAMMPS dump: numdp.io.trajectory) on rank 0, None on the other ranks (which take part in gathering);
    path: the trajectory file; world: the run's ranks; fields: the per-atom fields the file stores
    ("position", "velocity", "force"; only these are gathered); end_frame: False for LAMMPS'
    end frames ([output] end_frame, `write_end`).  Construction is collective."""

    def __init__(self, writer: TrajectoryWriter | None, every: int, path=None, world: World | None = None,
                 fields: tuple[str, ...] = FIELDS, end_frame: bool = True):
        self.end_frame = end_frame
        self.writer = writer
        self.fields = tuple(fields)
        self.every = int(every)
        self.world = world if world is not None else World(None)
        self.path = path if path is not None else writer.path
        self.last_step = self.world.bcast_object(writer.last_step() if writer is not None else None)
        self.failed = False   # a write failed: closing the writer may fail again, quietly

    def wants(self, step: int) -> bool:
        return step % self.every == 0

    def report(self, s: Snapshot) -> None:
        st = s.state
        atoms = s.atoms(("positions",) + tuple(FIELD_ARRAYS[f] for f in self.fields if f != "position"))
        bounds = s.position_bounds() if st.box is None else None
        observables = s.observables()   # collective
        if self.writer is None:
            atoms.drain()
        else:
            try:
                self.writer.append_frame(Frame(st.step, st.time, atoms.natoms, st.box, observables,
                                               atoms.names, atoms.blocks(), bounds))
            except OSError as exc:
                self.failed = True
                raise cannot_write(self.path, "trajectory", exc) from None
        self.last_step = s.step

    def write_now(self, s: Snapshot) -> None:
        """Write a frame unless this step is already the last one in the file."""
        if self.last_step != s.step:
            self.report(s)

    def write_end(self, s: Snapshot, end_step: int) -> None:
        """The frame of a run's end, `s` at the step the run ended at (its `end_step`, or the step
        a minimization stopped at): numdp writes it off the cadence too; without `end_frame`
        as LAMMPS, which writes dumps on their cadence only, at an MD run's last step too (its
        Output::write), and a minimize's stop step when it stopped before its last iteration
        (etol, ftol, maxeval: Min::run), none more at MAXITER."""
        if not self.end_frame and s.step == end_step and not self.wants(s.step):
            return
        self.write_now(s)

    def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                writer.close()
            except OSError as exc:
                if not self.failed:
                    raise cannot_write(self.path, "trajectory", exc) from None


class CheckpointReporter:
    """Writes the whole state atomically every `every` steps (0: only at the end), in global id
    order from rank 0, so that a restart can use any number of ranks.  A FIFO at `path` is
    refused here, before the run (an HDF5 file needs to seek); /dev/null is written into."""

    def __init__(self, path, every: int, input_text: str = "", force_unit: str = DEFAULT_FORCE_UNIT,
                 world: World | None = None):
        self.world = world if world is not None else World(None)
        with self.world.agreement():
            if self.world.is_root and path is not None:
                special_target(path, "checkpoint", hdf5=True)
        self.path = path
        self.every = int(every)
        self.input_text = input_text
        self.force_unit = force_unit
        self.last_written = None

    def wants(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def report(self, s: Snapshot) -> None:
        self.write(s, self.path)

    def file_for(self, step: int, path=None) -> Path:
        """The file written for `step` to `path` (default the checkpoint's): a series name
        (numdp.io.series, LAMMPS' `restart N ROOT`) gives one file per step."""
        return series_file(self.path if path is None else path, step)

    def write(self, s: Snapshot, path) -> None:
        """Collective: every rank calls it; rank 0 writes."""
        atoms = s.atoms()
        observables = s.observables()   # collective
        if atoms.world.is_root:
            file = self.file_for(s.step, path)
            special_target(file, "checkpoint", hdf5=True)
            try:
                write_checkpoint(file, s.state, observables, self.input_text, self.force_unit, atoms)
            except OSError as exc:  # the previous checkpoint stays (numdp.io.atomic)
                raise cannot_write(file, "checkpoint", exc) from None
        else:
            atoms.drain()
        if path == self.path:
            self.last_written = s.step

    def close(self) -> None:
        pass
