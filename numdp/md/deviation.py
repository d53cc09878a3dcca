"""Model deviation during `numdp run` ([model_devi]): LAMMPS `pair_style deepmd m0 m1 ... out_freq N
out_file F [atomic] [relative L] [relative_v L]`.

Model 0 drives the dynamics and is evaluated every step.  At every step that is a multiple of
`every` (step 0 included, as in LAMMPS) the other models are evaluated on the same configuration
with the force provider's ghosts, candidates and neighbour list (`ForceProvider.evaluate_others`;
the step before, the provider is asked to evaluate them in the deviation step's own force call,
with model 0, so that models sharing rcut, rcut_smth, sel, davg and dstd compute the environment
matrix once) and one row is written: the columns of LAMMPS (`numdp.io.model_devi_file`, no
`devi_e`), the maths of `numdp.model.deviation`.  In a GPU run the per-atom force deviations are
computed on the device from the models' device forces; only their max / min / sum (and with
`atomic` the per-atom values) come to the host.  Under MPI the per-atom force deviations are
local; max / min / sum / count reduce over ranks, the virials are global sums already, and with
`atomic` the per-atom values are gathered on rank 0 in global atom order.

The file: a new run writes it afresh (a previous run's file is backed up by setup, numdp.io.backup);
a restart keeps the rows up to the checkpoint's step (rows past it are dropped, atomically) and
appends, so that the file equals the uninterrupted run's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import LineFile, atomic_path
from ..io.model_devi_file import header_line, row_line
from ..model.deviation import FrameDeviation, atom_force_deviation, energy_deviation, virial_deviation
from ..parallel.world import World
from .reporters import Snapshot

__all__ = ["DeviationReporter", "check_ensemble"]


def check_ensemble(models, files, where: str) -> None:
    """One-line InputError unless every model shares model 0's rcut and type_map (the neighbour
    list and the atom types are shared).  `where`: the message prefix (file: [model] file)."""
    m0 = models[0]
    for model, path in zip(models[1:], files[1:]):
        if list(model.type_map) != list(m0.type_map):
            raise InputError(f"{where}: {path} has type_map {list(model.type_map)} but {files[0]} has "
                             f"{list(m0.type_map)} (the models of a deviation ensemble must share type_map and rcut)")
        if float(model.rcut) != float(m0.rcut):
            raise InputError(f"{where}: {path} has rcut {float(model.rcut)} A but {files[0]} has "
                             f"{float(m0.rcut)} A (the models of a deviation ensemble must share type_map and rcut)")


def _resume_rows(path: Path, after: int) -> None:
    """Drop the rows of `path` past step `after` (comment lines kept), atomically."""
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        fields = line.split()
        if fields and not line.startswith("#"):
            try:
                if int(fields[0]) > after:
                    continue
            except ValueError:
                raise InputError(f"{path}: not a model deviation file (row {line.strip()[:40]!r})") from None
        kept.append(line)
    if kept != lines:
        with atomic_path(path, "model deviation file") as tmp:
            Path(tmp).write_text("".join(kept))


class DeviationReporter:
    """Writes one deviation row every `every` steps (a reporter of numdp.md.loop).

    provider: the run's ForceProvider (model 0); models: the other models (1..); path: the file
    (written by rank 0); atomic / relative / relative_v: as [model_devi]; resume_after: the
    checkpoint's step on a restart (None: a new file).  Construction is collective."""

    def __init__(self, provider, models, every: int, path: Path, atomic: bool = False,
                 relative: float | None = None, relative_v: float | None = None,
                 resume_after: int | None = None, world: World | None = None):
        self.provider = provider
        self.models = list(models)
        self.every = int(every)
        self.path = Path(path)
        self.atomic = bool(atomic)
        self.relative = relative
        self.relative_v = relative_v
        self.world = world if world is not None else World(None)
        self.fp = None
        with self.world.agreement():
            if self.world.is_root:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if resume_after is not None and self.path.is_file():
                    _resume_rows(self.path, resume_after)
                    self.fp = LineFile(self.path, "model deviation file", "a")
                else:
                    self.fp = LineFile(self.path, "model deviation file", "w")
                    self.fp.write(header_line(energy=False, atomic=self.atomic) + "\n")
        # the run's first force call may be at a deviation step; when it is not, or when a
        # restart starts from the checkpoint's forces, the first wants() replaces this
        self._plan(None)

    def wants(self, step: int) -> bool:
        # asked after the forces of every step (numdp.md.loop): when the next step is a deviation
        # step, the provider evaluates the other models in that step's force call, together with
        # model 0 (one environment matrix where they share it), and `deviation` reads the results
        self._plan(step + 1)
        return step % self.every == 0

    def _plan(self, step: int | None) -> None:
        """Tell the provider whether its next call (the configuration of `step`; None: the run's
        first call, whatever its step) is to evaluate the other models too."""
        if hasattr(self.provider, "evaluate_next_with"):
            due = step is None or step % self.every == 0
            self.provider.evaluate_next_with(self.models if due else None)

    def deviation(self, s: Snapshot) -> FrameDeviation:
        """The deviations of the current configuration (atom_devi_f: all atoms in id order on rank
        0 with `atomic`, empty otherwise).  Collective."""
        state = s.state
        world = self.world
        others = self.provider.evaluate_others(state, self.models)
        be = self.provider.device_backend   # a GPU run: the forces stay on the device
        xp = np if be is None else be.xp
        f0 = state.forces if be is None else self.provider.device_forces
        forces = xp.stack([f0] + [f for f, _, _ in others])
        energies = [state.potential_energy] + [e for _, e, _ in others]
        virials = np.stack([state.virial] + [v for _, _, v in others])
        natoms = state.natoms_global
        atom = atom_force_deviation(forces, self.relative, xp)
        fmax = world.max_global(float(atom.max()) if atom.size else 0.0)
        fmin = -world.max_global(-float(atom.min()) if atom.size else -np.inf)
        fsum = world.sum_global(float(atom.sum()))
        if be is not None and self.atomic:
            atom = np.asarray(be.to_host(atom), dtype=np.float64)
        ev = virial_deviation(virials, natoms, self.relative_v)
        per_atom = np.empty(0)
        if self.atomic:
            rows = world.gather_rows(np.column_stack([state.ids.astype(np.float64), atom]))
            if rows is not None:
                per_atom = rows[np.argsort(rows[:, 0], kind="stable"), 1]
        return FrameDeviation(max_devi_v=float(ev.max()), min_devi_v=float(ev.min()),
                              avg_devi_v=float(np.sqrt(np.mean(ev ** 2))), max_devi_f=fmax, min_devi_f=fmin,
                              avg_devi_f=fsum / natoms, devi_e=energy_deviation(energies, natoms),
                              atom_devi_f=per_atom)

    def report(self, s: Snapshot) -> None:
        d = self.deviation(s)
        if self.fp is not None:
            self.fp.write(row_line(s.step, d, energy=False, atomic=self.atomic) + "\n")

    def close(self) -> None:
        if self.fp is not None:
            self.fp.close()
