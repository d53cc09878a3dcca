"""A LAMMPS script (the subset DP-GEN and DP users write) -> the tables of a `numdp run` input.

`translate(text, name, cli_variables, base)` runs the script (numdp.lammps.script) and returns a
`Translation`: the tables (a dict, as `numdp run` would parse from TOML), the notices where numdp
differs from LAMMPS, and the TOML text of the tables; for each `run` after the first, the tables
of a restart from the final checkpoint of the run before.  numdp.config.run_settings validates the
tables like any `numdp run` input, and numdp run's code path runs them: there is no second MD
driver.  Every command is either translated, accepted as harmless (no effect on the dynamics),
or refused with one line ``FILE:LINE: COMMAND: ...``; docs/lammps-input.md has the table.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from ..config import FIRE_KEYS, LINE_KEYS
from ..errors import InputError
from ..io.series import MARK, is_series, latest_file, series_file
from ..io.trajectory import BoxOrigin
from ..units import EV_PER_A3_TO_BAR, KB
from ..validate import toml_lines
from .script import Command, FinalState, KeywordUnavailable, Script, is_number

METAL_TIMESTEP = 0.001   # ps: LAMMPS' default timestep in units metal
LAMMPS_SKIN = 2.0        # Å: LAMMPS' default neighbor skin in units metal
LAMMPS_CHAIN = 3         # fix nvt/npt tchain and pchain default
# fix nvt/npt/nph keywords numdp lmp accepts at LAMMPS' default value only (drag: any zero)
DEFAULT_KEYWORDS = {"tloop": "1", "ploop": "1", "mtk": "yes", "dilate": "all", "drag": "0.0", "couple": "none"}
DEFAULT_LOG = "log.lammps"
VELOCITY_NOTICE = ("velocity create: numdp draws Gaussian (Maxwell-Boltzmann) velocities from its own "
                   "counter-based generator, zero total momentum, scaled to exactly T; the numbers "
                   "differ from LAMMPS' for the same seed")
NPH_NOTICE = ("fix nph with fix {thermostat}: numdp's npt with that thermostat and its Martyna-Tobias-Klein "
              "barostat (kind mtk), whose cell mass and chain take the thermostat's target temperature where "
              "LAMMPS' fix nph takes the start temperature (or ptemp)")
NPH_START_NOTICE = ("fix nph without ptemp: the cell's mass and chain take the velocity create temperature, "
                    "{temperature} K (LAMMPS: the temperature at the run's start, which velocity create sets)")
RENEWED_NOTICE = ("fix nvt/npt defined after a run: numdp's Nose-Hoover chain goes on from the chain "
                  "variables the run before ended with (LAMMPS starts a new fix's at zero); same ensemble")
XYZ_NOTICE = ("dump xyz: numdp writes extended XYZ: each frame's comment line holds the cell and the step "
              "(Lattice=... step=...) where LAMMPS writes ' Atoms. Timestep: N', and the atom lines are "
              "'ELEMENT x y z' (LAMMPS: the type number unless dump_modify element names them), id order")
FORMAT_NOTICE = ("thermo_modify format: numdp prints its own fixed-width number formats (the same values; "
                 "the log's columns are LAMMPS' titles)")
COMPUTE_NOTICE = ("thermo_style {columns}: numdp prints the thermo keyword each compute equals (temp, pe, ke: "
                  "the same values), titled by the keyword where LAMMPS writes c_ID")
REPEAT_NOTICE = ("thermo_style {columns}: a quantity named twice is printed once, in its first column (the "
                 "columns after it move left)")
LAMMPS_COMPUTES = {"thermo_temp": "temp", "thermo_press": "press", "thermo_pe": "pe"}
"""The computes LAMMPS defines itself, as the thermo keywords they are."""
THERMO_ONE = ["step", "temp", "epair", "emol", "etotal", "press"]   # LAMMPS' thermo_style one (its default)

# LAMMPS' units metal constants (its update.cpp: boltz, nktv2p); numdp's are CODATA 2018's (numdp.units).
# numdp lmp gives numdp run the temperatures and pressures whose kT and P0 (eV, eV/Å³) are LAMMPS' for
# the script's numbers, so that numdp repeats LAMMPS' trajectory (CONSTANTS_COMMENT).
LAMMPS_KB = 8.617343e-5         # eV/K
LAMMPS_NKTV2P = 1.6021765e6     # bar per eV/Å³
CONSTANTS_COMMENT = (
    f"temperatures (K) and pressures (bar) below are the script's times {LAMMPS_KB!r}/{KB!r} and "
    f"{EV_PER_A3_TO_BAR!r}/{LAMMPS_NKTV2P!r}: with numdp's CODATA 2018 Boltzmann constant and bar they are the "
    f"kT and P0 (eV, eV/A^3) of LAMMPS' units metal constants for the script's numbers, so that numdp repeats "
    f"LAMMPS' trajectory (numdp's printed temp and press read 1.13e-6 and 8.4e-8 higher, relatively, than "
    f"LAMMPS' for the same state)")


def lammps_kelvin(t):
    """numdp's temperature (K) of the kT of LAMMPS' `t` (K; a ramp's [start, stop] too)."""
    return [lammps_kelvin(x) for x in t] if isinstance(t, list) else t * (LAMMPS_KB / KB)


def lammps_bar(p):
    """numdp's pressure (bar) of the P0 (eV/Å³) of LAMMPS' `p` (bar; a ramp's [start, stop] too)."""
    return [lammps_bar(x) for x in p] if isinstance(p, list) else p * (EV_PER_A3_TO_BAR / LAMMPS_NKTV2P)


class Ensemble(str, Enum):
    NVE = "nve"
    NVT = "nvt"
    NPT = "npt"
    NPH = "nph"   # LAMMPS' fix nph: numdp's nph; beside a thermostat fix numdp's npt


COUPLINGS = {"iso": "isotropic", "aniso": "anisotropic", "tri": "triclinic"}   # fix npt -> [md] barostat.coupling


LAMMPS_LOGICAL = {"yes": True, "on": True, "true": True, "1": True,
                  "no": False, "off": False, "false": False, "0": False}
"""The words of LAMMPS' utils::logical."""


class Refused(Exception):
    """A command numdp lmp does not translate; the message follows "COMMAND: "."""


@dataclass
class Fix:
    ensemble: Ensemble
    temperature: float | list[float] | None = None   # K; [start, stop]: a ramp over the run
    tdamp: float | None = None         # ps
    chain: int = LAMMPS_CHAIN
    pchain: int = LAMMPS_CHAIN         # the barostat's chain (fix npt / nph; 0: none)
    ptemp: float | None = None         # K: fix nph's reference temperature of the cell's mass
    pressure: float | list[float] | None = None      # bar; [start, stop]: a ramp over the run
    pdamp: float | None = None         # ps
    coupling: str | None = None


class ThermostatStyle(str, Enum):
    """LAMMPS thermostat fixes that act beside `fix nve`, as numdp's thermostat kinds."""

    LANGEVIN = "langevin"       # fix langevin
    CSVR = "csvr"               # fix temp/csvr


THERMOSTAT_FIXES = {"langevin": ThermostatStyle.LANGEVIN, "temp/csvr": ThermostatStyle.CSVR}
LANGEVIN_NOTICE = ("fix langevin: numdp's Langevin thermostat (an Ornstein-Uhlenbeck velocity update of "
                   "friction 1/damp, its own random numbers) keeps the total momentum zero, {zero}; the "
                   "trajectory differs from LAMMPS' force-based fix")
LANGEVIN_ZERO = {"yes": "as LAMMPS' zero yes",
                 "no": "where LAMMPS' zero no (its default) lets it diffuse: LAMMPS' temp then reads 3N/(3N-3) of "
                       "the target on average, numdp's the target"}
"""The notice's words for the script's `zero yes|no` (LAMMPS' compute temp counts 3N-3 degrees of
freedom; with zero no the thermostat heats all 3N)."""
RECENTER_MESSAGE = ("recenter: numdp keeps the centre of mass in place when the total momentum is zero: add "
                    "`velocity all zero linear` (or velocity create, fix momentum N linear 1 1 1) before the run; "
                    "LAMMPS' recenter then moves the atoms by round-off only")
RECENTER_BOX_NOTICE = ("fix recenter with fix npt / nph: the box's dilation moves the centre of mass, which LAMMPS' "
                       "recenter moves back and numdp does not: positions differ from LAMMPS' by one shift of "
                       "every atom (forces, energies and velocities are the same)")


@dataclass
class ThermostatFix:
    """`fix ID all langevin|temp/csvr Tstart Tstop damp seed`, applied beside `fix nve`."""

    style: ThermostatStyle
    temperature: float | list[float]   # K; [start, stop]: a ramp over the run
    damp: float                        # ps: 1/friction (langevin), relaxation time (csvr)
    seed: int
    fix_id: str


@dataclass
class Deviation:
    """pair_style deepmd's model-deviation keywords (its defaults), numdp's [model_devi]."""

    out_freq: int = 100
    out_file: str = "model_devi.out"
    atomic: bool = False
    relative: float | None = None      # eV/Å
    relative_v: float | None = None    # eV

    def table(self) -> dict:
        """The [model_devi] table."""
        t: dict = {"every": self.out_freq, "file": self.out_file}
        if self.atomic:
            t["atomic"] = True
        for key in ("relative", "relative_v"):
            if getattr(self, key) is not None:
                t[key] = getattr(self, key)
        return t


@dataclass
class Dump:
    """`dump ID all custom N FILE COLUMNS` (numdp's lammps-dump trajectory) or `dump ID all xyz N
    FILE` (style "xyz": numdp's extended XYZ, columns element x y z)."""

    every: int
    file: str
    columns: list[str]
    style: str = "custom"


@dataclass
class _Reopen:
    """A dump closed by `undump ID` after a run, until the same `dump ID ...` (`defined`) and
    `dump_modify ID append yes` re-open it: numdp's dump goes on over the runs, as LAMMPS' file
    does with append yes."""

    dump_id: str
    dump: Dump
    line: tuple   # (file, line) of the undump
    defined: bool = False

    def pending(self) -> str:
        """The refusal of a run or minimize before the dump is re-opened."""
        if not self.defined:
            return (f"undump {self.dump_id} (line {self.line[1]}) after a run, then a run or minimize: numdp's dump "
                    f"goes on over the runs; give the same `dump {self.dump_id} ...` and `dump_modify "
                    f"{self.dump_id} append yes` before it")
        return (f"dump {self.dump_id} after a run without `dump_modify {self.dump_id} append yes`: LAMMPS would "
                f"start {self.dump.file} again, numdp's dump goes on over the runs (add the append yes)")


class WriteKind(str, Enum):
    DATA = "write_data"         # a LAMMPS data file of the state
    RESTART = "write_restart"   # a numdp checkpoint of the state (what read_restart reads)


@dataclass(frozen=True)
class Written:
    """`write_data FILE` / `write_restart FILE` after run number `after` (0: the first): the state
    that run ended with."""

    after: int
    kind: WriteKind
    file: str


@dataclass(frozen=True)
class MdStart:
    """How the script's run after its minimize(s) starts, as LAMMPS': from the positions and cell
    the minimize (run `after`, 0: the first) stopped with, at the step it stopped at (`step`
    None) or reset_timestep's `step`, with the velocities LAMMPS' atoms have then.  numdp lmp
    writes that state to `file`, an MD checkpoint (numdp.commands.lmp), from which the run
    restarts (its [system] file), the log and the dump going on."""

    after: int
    file: str
    step: int | None
    timestep: float              # ps (the run's: the start's time is its step times it)
    draw: tuple[float, int] | None
    """velocity create's (K numdp's, seed): numdp's draw (by atom id and mass, wherever it is
    made: the same velocities before or after the minimize); None: `data_file`'s Velocities."""
    data_file: str | None        # the data file whose Velocities the atoms keep (None: zero)
    replicate: tuple[int, int, int] = (1, 1, 1)
    minimize_timestep: float | None = None   # ps, the timestep at the minimize (None: `timestep`'s)
    dump: str | None = None
    """The file of a dump defined after the minimize (None: none, or one that goes on from before
    it): the run starts it anew, its first frame at the start step when N divides it (LAMMPS'
    Output::setup); numdp lmp keeps an earlier file of that name as #FILE.N#."""

    def time(self, stop: int) -> float:
        """LAMMPS' time (ps) at the run's start, the minimize having stopped at step `stop`: its
        steps counted at the timestep it ran with (`timestep` adds the time so far before changing
        dt); reset_timestep to an earlier step zeroes the time, to a later one adds the steps
        skipped at the run's timestep (LAMMPS' Update::reset_timestep)."""
        dt = self.timestep if self.minimize_timestep is None else self.minimize_timestep
        if self.step is not None and self.step < stop:
            return 0.0
        return stop * dt + (0 if self.step is None else self.step - stop) * self.timestep


@dataclass
class Translation:
    tables: dict
    notices: list[str]
    toml: str
    writes: list[Written] = field(default_factory=list)
    """The write_data / write_restart commands: after which run, what and where."""
    type_elements: list[str] | None = None
    """The element of each LAMMPS type (pair_coeff's), None: type k is the model's type_map[k-1]."""
    later: list[tuple[dict, str]] = field(default_factory=list)
    """(tables, TOML) of each `run` after the first: a numdp run that continues from the final
    checkpoint of the run before it (its [system] file), as a restart with other settings."""
    epilogue: Epilogue | None = None
    """The script's lines after its last run that need the state it ended with (None: none)."""
    md_start: MdStart | None = None
    """The start of the run after the script's minimize (None: no run follows a minimize)."""
    origin: BoxOrigin | None = None
    """Where LAMMPS holds the box's lower corner (a data file's box from xlo ylo zlo, create_box's
    from its region's; None: not known, taken at 0 as numdp's): numdp's positions and bounds plus
    its corner are LAMMPS'."""
    open_cell: np.ndarray | None = None
    """LAMMPS' box (3, 3) Å, rows a, b, c from its corner, of an open system (boundary f f f),
    which numdp holds without a cell: the box write_data writes (None: a periodic system, or not
    known)."""

    def run(self, k: int) -> tuple[dict, str]:
        """(tables, TOML) of the script's run k (0: the first)."""
        return (self.tables, self.toml) if k == 0 else self.later[k - 1]

    def all_toml(self) -> str:
        """The TOML of every run, in order (--print-toml)."""
        return self.toml + "".join(f"\n# ---- run {k + 2}: numdp run this after run {k + 1} (it continues from "
                                   f"{tables['system']['file']})\n" + text
                                   for k, (tables, text) in enumerate(self.later))


FINAL_KEYWORDS = ("step", "atoms", "pe", "evdwl", "epair", "emol", "ecoul", "elong", "ke", "etotal", "temp",
                  "press", "pxx", "pyy", "pzz", "pxy", "pxz", "pyz", "vol", "lx", "ly", "lz", "xy", "xz", "yz",
                  "xlo", "xhi", "ylo", "yhi", "zlo", "zhi")
"""The thermo keywords a formula may hold after the script's last run or minimize (and c_ID of a
compute temp / pe / ke, count(all) as atoms): `final_values` of the state it ended with."""


@dataclass
class Epilogue:
    """The lines after a script's last run (or minimize) from the first one that needs the state
    it ended with: run by `lines` once numdp has run (`final_values`)."""

    script: Script
    translator: _Translator

    def start_velocities(self):
        """The velocities the atoms have in LAMMPS after the script's minimize (`_Translator.start_velocities`)."""
        return self.translator.start_velocities(self.translator.first)

    def lines(self, values: dict[str, float]) -> list[str]:
        """The text of the lines' `print` commands, the thermo keywords being `values`."""
        self.translator.final = values
        try:
            return self.script.finish(self.translator.keyword)
        finally:
            self.translator.final = None


KINETIC_KEYWORDS = ("ke", "etotal", "temp", "press", "pxx", "pyy", "pzz", "pxy", "pxz", "pyz")


def _velocities_known(s: _State) -> bool:
    """Whether numdp lmp knows the velocities LAMMPS' atoms have after the minimize of the state `s`:
    those they started it with, unless `velocity create` drew them (LAMMPS' own random numbers),
    `replicate` made the atoms, or min_style fire ran (it zeroes them at its start and leaves its
    own at its end)."""
    return s.velocity is None and s.replicate == (1, 1, 1) and s.min_style != "fire"


def final_values(frame: dict, model: str, fparam=None, aparam=None, velocities=None,
                 origin: BoxOrigin | None = None, open_cell=None) -> dict[str, float]:
    """FINAL_KEYWORDS of the state `frame` (numdp.io.h5md.read_frame of a run's final checkpoint)
    with the Deep Potential `model` (its pe and virial evaluated again), as LAMMPS computes them in
    units metal with its constants: pressures in bar = (kinetic + virial tensor) / V * nktv2p,
    temp = 2 ke / ((3N - 3) kB), the box and the tensor in LAMMPS' frame (a along x, b in xy).
    `velocities` (N, 3) Å/ps: those of the atoms in place of the frame's (LAMMPS' minimize leaves
    the atoms' velocities as they were, and its pressure counts them; numdp's are zero).
    `origin`: LAMMPS' box corner (Translation.origin; None: 0), which xlo ... zhi are from;
    `open_cell`: LAMMPS' box of an open system, which the frame has none of (Translation.open_cell).
    The box keywords (vol, lx ... zhi) of a system periodic along some vectors only, or none, are
    its box's; its pressures are left out (numdp lmp refuses them)."""
    from ..infer import DeepPot
    from ..io.structure import lammps_box
    from ..system import kinetic_tensor

    dp = DeepPot(model)
    names = dp.get_type_map()
    types = np.array([names.index(frame["type_map"][k]) for k in frame["species"]])
    x, box = np.asarray(frame["positions"], float), frame["box"]
    e, _, virial = dp.eval(x, None if box is None else np.asarray(box, float), types, fparam=fparam, aparam=aparam)
    m = np.asarray(frame["masses"], float)
    v = np.asarray(frame["velocities"] if velocities is None else velocities, float)
    n = len(x)
    kinetic = kinetic_tensor(v, m)   # eV: sum m v v^T (numdp's mvv2e is LAMMPS' metal value)
    ke = 0.5 * float(np.trace(kinetic))
    pe = float(e[0, 0])
    out = {"step": float(frame["step"]), "atoms": float(n), "pe": pe, "evdwl": pe, "epair": pe, "emol": 0.0,
           "ecoul": 0.0, "elong": 0.0, "ke": ke, "etotal": pe + ke,
           "temp": 2 * ke / ((3 * n - 3) * LAMMPS_KB) if n > 1 else 0.0}
    cell = box if box is not None else open_cell
    if cell is None:
        return out
    h, q = lammps_box(np.asarray(cell, float))
    volume = float(h[0, 0] * h[1, 1] * h[2, 2])
    lo = np.zeros(3) if origin is None else origin.corner(h)
    out.update(vol=volume, lx=h[0, 0], ly=h[1, 1], lz=h[2, 2], xy=h[1, 0], xz=h[2, 0], yz=h[2, 1], xlo=lo[0],
               xhi=lo[0] + h[0, 0], ylo=lo[1], yhi=lo[1] + h[1, 1], zlo=lo[2], zhi=lo[2] + h[2, 2])
    if box is None or (frame["pbc"] is not None and not all(frame["pbc"])):
        return {k: float(v) for k, v in out.items()}   # (LAMMPS' pressure of a non-periodic box: refused)
    tensor = q.T @ (kinetic + virial.reshape(3, 3)) @ q / volume * LAMMPS_NKTV2P
    # LAMMPS' pair deepmd takes the off-diagonal virial from the rows below the diagonal
    out.update(press=float(np.trace(tensor)) / 3, pxx=tensor[0, 0], pyy=tensor[1, 1], pzz=tensor[2, 2],
               pxy=tensor[1, 0], pxz=tensor[2, 0], pyz=tensor[2, 1])
    return {k: float(v) for k, v in out.items()}


@dataclass
class _State:
    """What the commands have set so far (LAMMPS' defaults where a command is optional)."""

    units: str | None = None
    boundary: tuple[str, str, str] = ("p", "p", "p")
    atom_style: str = "atomic"
    data_file: str | None = None
    data_header: "DataHeader | None" = None   # data_file's header, read once at read_data (None: unreadable)
    lattice: tuple[str, float] | None = None     # lattice STYLE SCALE (Å)
    regions: dict[str, tuple[float, ...]] = field(default_factory=dict)   # block bounds, lattice units
    box_region: tuple[tuple[int, int, int], int] | None = None   # create_box: (cells, number of types)
    box_region_box: tuple | None = None   # create_box: LAMMPS' box, (lower corner (3,) Å, lengths (3,) Å)
    created: dict | None = None                  # create_atoms: the [system] lattice table, LAMMPS types
    restart_file: Path | None = None
    restart_origin: BoxOrigin | None = None   # LAMMPS' box corner of the run that wrote restart_file
    restart_step: int | None = None
    masses: list[tuple[int, int | None, float, tuple]] = field(default_factory=list)
    """the mass commands in order: (first type, last type (None: the last there is), amu, where)"""
    models: list[str] = field(default_factory=list)
    fparam: list[float] | None = None   # pair_style deepmd ... fparam V1 V2 ...
    aparam: list[float] | None = None   # pair_style deepmd ... aparam V1 V2 ... (every atom's)
    pair_line: int = 0
    devi: Deviation = field(default_factory=Deviation)
    elements: list[str] | None = None   # pair_coeff * * ELEMENTS
    pair_coeff: bool = False
    velocity: tuple[float, int] | None = None   # (K, seed)
    fix: Fix | None = None
    fix_id: str | None = None
    thermostat: ThermostatFix | None = None
    timestep: float = METAL_TIMESTEP
    thermo: int = 0
    skin: float = LAMMPS_SKIN
    dump: Dump | None = None
    dump_id: str | None = None
    triclinic: bool = False   # `change_box all triclinic`: LAMMPS' triclinic box (its dump's tilt bounds)
    dump_line: tuple = (None, 0)   # (file, line) of the dump command
    dump_elements: list[str] | None = None   # dump_modify ID element E1 ... En
    dump_elements_line: tuple = (None, 0)
    checkpoint: str | None = None
    checkpoint_every: int = 0
    log: str = DEFAULT_LOG
    steps: int | None = None
    min_style: str = "cg"                 # LAMMPS' default (numdp: cg, sd, fire)
    min_modify: dict = field(default_factory=dict)   # [minimize] keys from min_modify
    minimize: dict | None = None          # [minimize] etol, ftol, steps from `minimize`
    box_relax: tuple[str, dict] | None = None   # fix ID all box/relax ...: (ID, [minimize] box)
    setforce: tuple | None = None   # fix ID all setforce 0|NULL x3: (ID, [minimize] fixed_directions, (file, line))
    replicate: tuple[int, int, int] = (1, 1, 1)   # replicate NX NY NZ (their product over commands)
    continues: str | None = None          # a run after the first: the checkpoint the run before ends with
    run_steps: int | None = None          # the steps of the run (run 0: an evaluation of the state)
    thermo_columns: list[str] | None = field(default_factory=lambda: list(THERMO_ONE))   # None: numdp's
    zero_momentum: bool = False   # velocity all zero linear / a new fix momentum since the last run
    recenter: tuple | None = None  # fix recenter INIT|NULL ...: (fix ID, (file, line) of the fix)
    reset_step: int | None = None  # reset_timestep N after a minimize: the next run's first step
    min_style_velocity: bool = False   # velocity create after a FIRE minimize (LAMMPS' atoms then have its)


def _number(word: str, what: str, positive=False, nonnegative=False) -> float:
    try:
        v = float(word)
    except ValueError:
        raise Refused(f"{what}: expected a number, got {word!r}") from None
    if not math.isfinite(v) or (positive and v <= 0) or (nonnegative and v < 0):
        raise Refused(f"{what}: must be {'> 0' if positive else '>= 0' if nonnegative else 'finite'}, got {word}")
    return v


def _integer(word: str, what: str, nonnegative=True) -> int:
    try:
        v = int(word)
    except ValueError:
        raise Refused(f"{what}: expected an integer, got {word!r}") from None
    if nonnegative and v < 0:
        raise Refused(f"{what}: must be >= 0, got {v}")
    return v


GROUP_MESSAGE = ("only group 'all' is supported by numdp lmp: group '{group}' is defined, but numdp lmp runs "
                 "fixes, computes, dumps and velocity on every atom")


def _all_group(args, command: str, groups: set[str] | frozenset = frozenset()) -> None:
    """Refuse `command ID GROUP ...` on a group other than all (`groups`: the script's groups)."""
    if len(args) < 2 or args[1] != "all":
        if len(args) >= 2 and args[1] in groups:
            raise Refused(GROUP_MESSAGE.format(group=args[1]) + f" (expected: {command} ID all ...)")
        if len(args) >= 2:
            raise Refused(f"only group 'all' is supported by numdp lmp, and group '{args[1]}' is not defined "
                          f"(LAMMPS refuses it too)")
        raise Refused(f"only group 'all' is supported by numdp lmp (expected: {command} ID all ...)")


class _Translator:
    def __init__(self, name: str, base: Path):
        self.name = name
        self.base = base
        self.s = _State()
        self.notices: list[str] = []
        self.ran = False
        self.first: _State | None = None   # the state at the first run or minimize
        self.runs: list[_State] = []   # the state at each run after the first (their tables: `tables`)
        self.reopen: _Reopen | None = None   # an `undump` after a run until its dump is re-opened to append
        self.momentum_ids: set[str] = set()   # fix momentum IDs (numdp keeps the momentum zero anyway)
        self.groups: set[str] = set()   # the group command's names (a definition changes nothing)
        self.langevin_zero = "no"       # fix langevin's zero keyword (LAMMPS' default no)
        self.computes: dict[str, str] = dict(LAMMPS_COMPUTES)   # compute ID -> the thermo keyword it equals
        self.writes: list[Written] = []
        self.restart_frame: dict | None = None   # numdp.io.h5md.read_frame of read_restart's checkpoint
        self._type_maps: dict[Path, list[str]] = {}   # model file -> its type_map (`_model_type_map`)
        self.final: dict[str, float] | None = None   # FINAL_KEYWORDS' values after the runs (`Epilogue`)
        self.minimize_stop: int | None = None   # the step the minimize before a run stopped at, once known
        self.md_start: MdStart | None = None    # the start of the run after the minimize (`_after_minimize`)
        self.dump_after_minimize = False   # the dump was defined after the minimize (MdStart.dump)

    def keyword(self, name: str) -> float | None:
        """The thermo keywords a formula may hold: dt (the timestep; LAMMPS' manual writes fix nvt's
        Tdamp as $(100.0*dt)) and step (the current step: 0, read_restart's, or the step the run
        before ended at; before the box LAMMPS refuses it) anywhere; after a run or minimize, the
        FINAL_KEYWORDS, c_ID of a compute temp / pe / ke and count(all) (atoms) in the state it
        ended with (FinalState: evaluated after the runs, `final`)."""
        from ..md.thermo import KEYWORDS

        if name == "dt":
            return self.s.timestep
        quantity = self.computes.get(name[2:]) if name.startswith("c_") else name
        if self.final is not None:   # after the runs
            if quantity in KINETIC_KEYWORDS and quantity not in self.final:
                raise KeywordUnavailable(f"'{name}' after a minimize: LAMMPS counts the velocities its atoms have "
                                         f"then, which numdp lmp does not know (velocity create's, min_style "
                                         f"fire's or a replicated system's)")
            return self.final.get(quantity)
        if self.ran and quantity in FINAL_KEYWORDS and (quantity != "step" or self.s.minimize is not None):
            raise FinalState(f"'{name}' in formula after a run: its value is the state the run ends with")
        if name != "step":
            if quantity in KEYWORDS or quantity in FINAL_KEYWORDS:   # LAMMPS defines the variable; it reads a run's state
                raise KeywordUnavailable(f"'{name}' in formula: numdp lmp evaluates formulas before it runs, where of "
                                         f"the thermo keywords only dt and step have values (after the script's last "
                                         f"run or minimize, those of the state it ended with)")
            return None
        if self.s.data_file is None and self.s.restart_file is None and self.s.box_region is None:
            raise KeywordUnavailable("step before read_data / read_restart / create_box (LAMMPS refuses it too)")
        return float(self.s.steps if self.ran else self.s.restart_step or 0)

    def note(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)

    # -- the commands -----------------------------------------------------------------------------
    def __call__(self, c: Command) -> None:
        if self.ran and c.name not in _BETWEEN_RUNS + ("minimize",) \
                and not (c.name == "velocity" and (c.args[1:] == ("zero", "linear") or self.s.minimize is not None)) \
                and not (c.name in ("dump", "dump_modify") and self.reopen is not None) \
                and not (self.s.minimize is not None and (c.name == "dump" or (c.name == "dump_modify"
                                                                              and self.dump_after_minimize))):
            what = "minimize" if self.s.minimize is not None else "run"
            extra = ", velocity all create, dump" if self.s.minimize is not None else ", velocity all zero linear"
            raise Refused(f"after a {what}, numdp lmp accepts only {', '.join(_BETWEEN_RUNS)}{extra} (a later run "
                          f"continues from the state the run before ended with)")
        if c.name in ("run", "minimize") and self.reopen is not None:
            raise Refused(self.reopen.pending())
        if c.name in _HARMLESS:
            _HARMLESS[c.name](c.args)
        elif c.name in _COMMANDS:
            getattr(self, "_" + c.name)(c)
        else:
            raise Refused("not supported by numdp lmp")

    def _need_box(self, what: str) -> None:
        if self.s.data_file is None and self.s.restart_file is None and self.s.box_region is None:
            raise Refused(f"{what} before read_data / read_restart / create_box (LAMMPS refuses it too)")

    def _no_box(self, what: str) -> None:
        if self.s.data_file is not None or self.s.restart_file is not None or self.s.box_region is not None:
            raise Refused(f"{what} after read_data / read_restart / create_box (LAMMPS refuses it too)")

    def _clear(self, c: Command) -> None:
        """clear before the box: LAMMPS' settings back to their defaults (units lj, ...); the
        variables and the log stay, as in LAMMPS.  After it, it would delete the system: refused."""
        if self.s.data_file is not None or self.s.restart_file is not None or self.s.box_region is not None:
            raise Refused("after read_data / read_restart / create_box numdp lmp runs one system per script: "
                          "split the script at clear")
        if c.args:
            raise Refused("expected: clear")
        self.s = _State(log=self.s.log)
        self.computes = dict(LAMMPS_COMPUTES)
        self.momentum_ids.clear()
        self.groups.clear()

    def _group(self, c: Command) -> None:
        """group ID STYLE ...: a definition changes nothing numdp computes; a fix, compute, dump or
        velocity on the group is refused (`_all_group`)."""
        self._need_box("group")
        if len(c.args) < 2:
            raise Refused("expected: group ID STYLE ...")
        if c.args[0] == "all":
            raise Refused("group all is every atom; numdp lmp does not redefine it")
        if c.args[1] == "delete":
            self.groups.discard(c.args[0])
        else:
            self.groups.add(c.args[0])

    # -- a crystal made in the script ---------------------------------------------------------------
    def _lattice(self, c: Command) -> None:
        from ..lattice import STYLES

        if self.s.units != "metal":   # LAMMPS reads the scale in the units of the moment (lj: a density)
            raise Refused("lattice before units metal: LAMMPS would read its scale as an lj reduced density; "
                          "put units metal first")
        if len(c.args) < 2 or c.args[0] not in STYLES:
            raise Refused(f"numdp lmp makes the lattices {', '.join(STYLES)}: expected lattice STYLE SCALE, "
                          f"got {' '.join(c.args)!r}")
        rest = list(c.args[2:])
        defaults = {("orient", "x"): ["1", "0", "0"], ("orient", "y"): ["0", "1", "0"],
                    ("orient", "z"): ["0", "0", "1"]}
        while rest:
            if rest[0] == "orient" and len(rest) >= 5 and defaults.get(("orient", rest[1])) == rest[2:5]:
                rest = rest[5:]
            elif rest[0] == "origin" and len(rest) >= 4 and all(is_number(w) and float(w) == 0 for w in rest[1:4]):
                rest = rest[4:]
            else:
                raise Refused(f"keyword {rest[0]!r} is not supported by numdp lmp (the default orientation and "
                              f"origin are)")
        self.s.lattice = (c.args[0], _number(c.args[1], "scale (the lattice constant, A)", positive=True))

    def _region(self, c: Command) -> None:
        if len(c.args) < 8 or c.args[1] != "block":
            raise Refused("numdp lmp reads `region ID block xlo xhi ylo yhi zlo zhi [units lattice|box]` only")
        bounds = [_number(w, "block bound") for w in c.args[2:8]]
        units = "lattice"
        rest = list(c.args[8:])
        while rest:
            if rest[0] == "units" and len(rest) > 1 and rest[1] in ("lattice", "box"):
                units, rest = rest[1], rest[2:]
            elif rest[0] == "side" and len(rest) > 1 and rest[1] == "in":
                rest = rest[2:]
            else:
                raise Refused(f"keyword {rest[0]!r} is not supported by numdp lmp (units, side in are)")
        if units == "box":
            if self.s.lattice is None:
                raise Refused("numdp lmp makes a box from a region in lattice units of a lattice: lattice first")
            from ..lattice import spacings

            edge = spacings(*self.s.lattice)
            bounds = [b / edge[k // 2] for k, b in enumerate(bounds)]
        self.s.regions[c.args[0]] = tuple(bounds)

    def _create_box(self, c: Command) -> None:
        self._no_box("create_box")
        if len(c.args) != 2:
            raise Refused("expected: create_box N REGION-ID (no keywords)")
        ntypes = _integer(c.args[0], "N")
        if ntypes < 1:
            raise Refused("N must be >= 1")
        if c.args[1] not in self.s.regions:
            raise Refused(f"no region {c.args[1]!r}")
        if self.s.lattice is None:
            raise Refused("numdp lmp makes a box from a lattice: lattice before create_box")
        bounds = self.s.regions[c.args[1]]
        cells = []
        for k in range(3):
            lo, hi = bounds[2 * k], bounds[2 * k + 1]
            n = hi - lo
            if abs(lo - round(lo)) > 1e-9 or abs(hi - round(hi)) > 1e-9 or round(n) < 1:
                raise Refused(f"the region's {'xyz'[k]} bounds {lo:g} {hi:g} are not whole lattice cells: numdp "
                              f"lmp fills whole unit cells")
            cells.append(int(round(n)))
        from ..lattice import spacings

        edge = spacings(*self.s.lattice)
        self.s.box_region = (tuple(cells), ntypes)
        self.s.box_region_box = (np.array(bounds[::2]) * edge, np.array(cells) * edge)

    def _create_atoms(self, c: Command) -> None:
        from ..lattice import BASES

        self._need_box("create_atoms")
        if self.s.box_region is None:
            raise Refused("numdp lmp creates atoms in a box of create_box only")
        if self.s.created is not None:
            raise Refused("a second create_atoms: numdp lmp fills the box once")
        if len(c.args) < 2 or c.args[1] != "box":
            raise Refused("numdp lmp reads `create_atoms TYPE box [basis M T ...]` (region, single, random "
                          "are not supported)")
        cells, ntypes = self.s.box_region
        style, scale = self.s.lattice
        nbasis = len(BASES[style])
        types = [self._atom_type(c.args[0], ntypes)] * nbasis
        rest = list(c.args[2:])
        while rest:
            if rest[0] == "basis" and len(rest) >= 3:
                m = _integer(rest[1], "basis M")
                if not 1 <= m <= nbasis:
                    raise Refused(f"basis {m}: a {style} lattice has basis atoms 1-{nbasis}")
                types[m - 1] = self._atom_type(rest[2], ntypes)
                rest = rest[3:]
            else:
                raise Refused(f"keyword {rest[0]!r} is not supported by numdp lmp (basis is)")
        self.s.created = {"style": style, "a": scale, "cells": list(cells), "types": types}

    @staticmethod
    def _atom_type(word: str, ntypes: int) -> int:
        t = _integer(word, "atom type")
        if not 1 <= t <= ntypes:
            raise Refused(f"atom type {t}: create_box declared types 1-{ntypes}")
        return t

    def _units(self, c: Command) -> None:
        self._no_box("units")
        if c.args != ("metal",):
            raise Refused(f"numdp lmp runs units metal only, got {' '.join(c.args)!r}")
        self.s.units = "metal"
        # LAMMPS' units command sets the timestep and the neighbor skin to the style's defaults
        self.s.timestep, self.s.skin = METAL_TIMESTEP, LAMMPS_SKIN

    def _boundary(self, c: Command) -> None:
        self._no_box("boundary")
        if len(c.args) != 3 or any(a not in ("p", "f") for a in c.args):
            raise Refused(f"numdp lmp supports p (periodic) and f (non-periodic) per direction, got "
                          f"{' '.join(c.args)!r}")
        self.s.boundary = tuple(c.args)

    def _atom_style(self, c: Command) -> None:
        self._no_box("atom_style")
        if len(c.args) != 1 or c.args[0] not in ("atomic", "charge", "full"):
            raise Refused(f"numdp lmp reads atom_style atomic (charge and full: the charges and bonds are "
                          f"unused by a Deep Potential), got {' '.join(c.args)!r}")
        self.s.atom_style = c.args[0]

    def _dimension(self, c: Command) -> None:
        if c.args != ("3",):
            raise Refused("numdp runs 3d systems only")

    def _neighbor(self, c: Command) -> None:
        if len(c.args) != 2 or c.args[1] not in ("bin", "nsq"):
            raise Refused("expected: neighbor SKIN bin|nsq")
        self.s.skin = _number(c.args[0], "skin", positive=True)

    def _neigh_modify(self, c: Command) -> None:
        # when and how the list is rebuilt: numdp rebuilds whenever an atom moved skin/2, always exact
        k, args = 0, c.args
        while k < len(args):
            key = args[k]
            if key in ("delay", "every", "one", "page", "binsize", "cluster") and k + 1 < len(args):
                k += 2
            elif key == "check" and k + 1 < len(args) and args[k + 1] in ("yes", "no"):
                k += 2
            else:
                raise Refused(f"keyword {key!r} is not supported by numdp lmp (delay, every, check, one, page "
                              f"and binsize are accepted: numdp rebuilds its list whenever an atom moved skin/2)")

    def _box(self, c: Command) -> None:
        if len(c.args) != 2 or c.args[0] != "tilt" or c.args[1] not in ("large", "small"):
            raise Refused("expected: box tilt large|small")

    def _read_data(self, c: Command) -> None:
        self._no_box("read_data")
        if len(c.args) != 1:
            raise Refused("numdp lmp reads `read_data FILE` without keywords")
        self.s.data_file = c.args[0]
        self.s.data_header = read_data_header(self.base / c.args[0])

    def _read_restart(self, c: Command) -> None:
        from ..io.h5md import checkpoint_problem, read_frame

        self._no_box("read_restart")
        if len(c.args) != 1:
            raise Refused("expected: read_restart FILE")
        pattern = c.args[0]
        if is_series(pattern):   # LAMMPS: the file of the largest timestep
            path = latest_file(self.base / pattern)
            if path is None:
                raise Refused(f"no file matches {pattern!r} with a step number for the * (numdp lmp restarts "
                              f"from the checkpoints its `restart N ROOT` writes: ROOT.STEP)")
        else:
            path = self.base / pattern
        problem = "not found" if not path.is_file() else checkpoint_problem(path)
        if problem is not None:
            raise Refused(f"{_relative(path, self.base)}: {problem}; numdp lmp restarts from the "
                          f"checkpoints of its `restart` command, not from LAMMPS binary restart files")
        frame = read_frame(path)
        self.s.restart_file = path
        self.s.restart_step = int(frame["step"])
        stored = _checkpoint_output(path)
        self.s.triclinic = self.s.triclinic or stored.get("triclinic_bounds") is True
        center, corner = (p if isinstance(p, list) and len(p) == 3 and all(isinstance(v, (int, float)) for v in p)
                          else None for p in (stored.get("box_center"), stored.get("box_corner")))
        self.s.restart_origin = BoxOrigin.of_output(center, corner)
        self.restart_frame = frame

    def _replicate(self, c: Command) -> None:
        """replicate NX NY NZ after read_data: numdp run's [system] replicate with replicate_order
        "lammps" (LAMMPS' atoms and ids: the x replica fastest).  Several replicate commands number
        the atoms as one of their product where the repeated directions come in the order x, y, z
        (replicate 2 1 1 then 1 3 1); otherwise refused (numdp numbers the replicas of one tiling)."""
        self._need_box("replicate")
        if len(c.args) != 3:
            raise Refused("numdp lmp reads `replicate NX NY NZ` without keywords")
        if self.s.data_file is None:
            raise Refused("numdp lmp replicates the system of read_data only (for a lattice, make the region "
                          "that many cells larger)")
        reps = [_integer(w, "replicate count") for w in c.args]
        if min(reps) < 1:
            raise Refused("the counts must be >= 1")
        for k, n in enumerate(reps):
            if n > 1 and self.s.boundary[k] != "p":
                raise Refused(f"replicate {n} along {'xyz'[k]}, which is not periodic (boundary "
                              f"{' '.join(self.s.boundary)})")
        if self.s.velocity is not None:
            raise Refused("replicate after velocity create: numdp draws the velocities of the whole system; "
                          "put velocity after replicate")
        axes = [k for k, n in enumerate(reps) if n > 1]
        done = [k for k, n in enumerate(self.s.replicate) if n > 1]
        if axes and done and axes[0] < done[-1]:
            raise Refused(f"replicate {' '.join(c.args)} after replicate along {'xyz'[done[-1]]}: LAMMPS' ids would "
                          f"then not be those of one replicate {' '.join(str(a * b) for a, b in zip(self.s.replicate, reps))}"
                          f", which numdp makes; replicate once with the product")
        self.s.replicate = tuple(a * b for a, b in zip(self.s.replicate, reps))

    def _reset_timestep(self, c: Command) -> None:
        """reset_timestep N where the step is N already (numdp's steps count from 0, or from the
        checkpoint's step, and go on over the script's runs), or after a minimize: the step the
        next run starts at (`MdStart`; LAMMPS refuses it with a dump defined)."""
        if len(c.args) != 1:
            raise Refused("numdp lmp reads `reset_timestep N` without keywords")
        n = _integer(c.args[0], "N")
        if self.ran and self.s.minimize is not None:
            if self.s.dump is not None and self.reopen is None:   # (after `undump ID` it is inactive)
                if MARK in Path(self.s.dump.file).name and self.dump_after_minimize:   # no minimize frames
                    self.s.reset_step = n
                    return
                if MARK in Path(self.s.dump.file).name:   # LAMMPS takes it (a file per frame)
                    raise Refused(f"reset_timestep with dump {self.s.dump_id} ({self.s.dump.file}, a file per frame) "
                                  f"defined: numdp's dump goes on over the runs and would drop the minimize's frames "
                                  f"after step {n} (LAMMPS writes them again); leave out the reset_timestep")
                raise Refused(f"reset_timestep with dump {self.s.dump_id} defined (LAMMPS refuses it too: Cannot "
                              f"reset timestep with active dump)")
            self.s.reset_step = n
            return
        now = self.s.steps if self.ran else self.s.restart_step or 0
        if n != now:
            raise Refused(f"reset_timestep {n}: numdp lmp cannot renumber the steps (the step here is {now}: "
                          f"numdp's steps start at 0, or at read_restart's step, and go on over the runs)")

    def _change_box(self, c: Command) -> None:
        self._need_box("change_box")
        if c.args != ("all", "triclinic"):
            raise Refused("numdp lmp accepts `change_box all triclinic` only (numdp's cells are triclinic "
                          "whenever needed)")
        self.s.triclinic = True

    def _mass(self, c: Command) -> None:
        """mass TYPES VALUE: TYPES a type N or LAMMPS' range *, *N, N*, M*N (the types the box has)."""
        self._need_box("mass")
        if len(c.args) != 2:
            raise Refused("expected: mass TYPE VALUE")
        lo, hi = _type_range(c.args[0])
        self.s.masses.append((lo, hi, _number(c.args[1], "mass", positive=True), (c.file, c.line)))

    def _pair_style(self, c: Command) -> None:
        if not c.args or c.args[0] != "deepmd":
            raise Refused(f"numdp lmp runs pair_style deepmd only, got {c.args[0] if c.args else 'none'!r}")
        args = list(c.args[1:])
        keys = {"out_freq", "out_file", "atomic", "relative", "relative_v", "fparam", "aparam"}
        refused = {"fparam_from_compute", "fparam_from_fix", "aparam_from_compute", "charge_spin", "ttm", "out_each",
                   "out_rel"}   # DeePMD-kit 3.2's keywords numdp does not run (never model files)
        models, k = [], 0
        while k < len(args) and args[k] not in keys | refused:
            models.append(args[k])
            k += 1
        if not models:
            raise Refused("expected: pair_style deepmd MODEL [MODEL ...] [keywords]")
        if any(is_number(m) for m in models):
            raise Refused("the DeePMD-kit 0.x form `deepmd MODELS N FILE` is not supported: write "
                          "out_freq N out_file FILE")
        devi = Deviation()
        values: dict[str, list[float] | None] = {"fparam": None, "aparam": None}
        while k < len(args):
            key = args[k]
            if key in refused:
                raise Refused(f"keyword {key} is not supported by numdp lmp")
            if key in values:   # the model's numb_fparam / numb_aparam values (checked by numdp run)
                k += 1
                values[key] = []
                while k < len(args) and is_number(args[k]):
                    values[key].append(float(args[k]))
                    k += 1
                if not values[key]:
                    what = "frame" if key == "fparam" else "atomic"
                    raise Refused(f"keyword {key} needs the model's {what} parameters (numbers)")
                continue
            if key == "atomic":
                devi.atomic = True
                k += 1
                continue
            if k + 1 >= len(args):
                raise Refused(f"keyword {key} needs a value")
            value = args[k + 1]
            if key == "out_freq":
                devi.out_freq = _integer(value, "out_freq")
                if devi.out_freq == 0:
                    raise Refused("out_freq must be > 0")
            elif key == "out_file":
                devi.out_file = value
            else:
                setattr(devi, key, _number(value, key, nonnegative=True))
            k += 2
        self.s.models, self.s.devi, self.s.pair_line = models, devi, c.line
        self.s.fparam, self.s.aparam = values["fparam"], values["aparam"]

    def _pair_coeff(self, c: Command) -> None:
        self._need_box("pair_coeff")
        if not self.s.models:
            raise Refused("before pair_style deepmd")
        if len(c.args) < 2 or c.args[:2] != ("*", "*"):
            raise Refused("numdp lmp reads `pair_coeff * * [ELEMENT ...]` only")
        self.s.pair_coeff = True
        self.s.elements = list(c.args[2:]) or None

    def _velocity(self, c: Command) -> None:
        self._need_box("velocity")
        args = c.args
        if tuple(args) == ("all", "zero", "linear"):
            self.s.zero_momentum = True   # [system] momentum = "zero": at the start of the next run
            return
        if args and args[0] != "all":
            if args[0] not in self.groups:
                raise Refused(f"only group 'all' is supported by numdp lmp, and group '{args[0]}' is not defined "
                              f"(LAMMPS refuses it too)")
            raise Refused(GROUP_MESSAGE.format(group=args[0]) + (
                "; for DP-GEN's PKA (velocity GROUP set VX VY VZ) give the atom's velocity in the data file's "
                "Velocities section, which numdp keeps" if args[1:2] == ("set",) else ""))
        if len(args) < 4 or args[0] != "all" or args[1] != "create":
            raise Refused("numdp lmp supports `velocity all create TEMP SEED [keywords]` and "
                          "`velocity all zero linear` only")
        temperature = _number(args[2], "temperature", nonnegative=True)
        seed = _integer(args[3], "seed")
        if seed < 1:
            raise Refused(f"seed must be > 0 (as LAMMPS), got {seed}")
        k = 4
        while k < len(args):
            key, value = args[k], args[k + 1] if k + 1 < len(args) else None
            if value is None:
                raise Refused(f"keyword {key} needs a value")
            if key == "dist" and value in ("gaussian", "uniform"):
                pass   # numdp's draw is Gaussian either way (VELOCITY_NOTICE)
            elif key == "mom" and value == "yes":
                pass   # numdp always zeroes the total momentum
            elif key == "rot" and value in ("yes", "no"):
                if value == "yes":
                    self.note("velocity rot yes: numdp does not zero the angular momentum of the start "
                              "velocities (the linear momentum is zeroed)")
            elif key == "loop" and value in ("all", "local", "geom"):
                pass   # LAMMPS' ways of drawing the same distribution; numdp's draw is per atom id anyway
            else:
                raise Refused(f"keyword {key} {value} is not supported by numdp lmp (dist gaussian|uniform, "
                              f"mom yes, rot yes|no, loop are)")
            k += 2
        if self.s.restart_file is not None:
            raise Refused("velocity create after read_restart: numdp restarts with the checkpoint's velocities")
        if self.ran and self.s.min_style == "fire":   # (a velocity create after a FIRE minimize: _after_minimize)
            self.s.min_style_velocity = True
        self.s.velocity = (temperature, seed)
        self.note(VELOCITY_NOTICE)

    def _fix(self, c: Command) -> None:
        if len(c.args) < 3:
            raise Refused(_bare_fix_message(c.args))
        self._need_box("fix")
        _all_group(c.args, "fix", self.groups)
        fix_id, style, args = c.args[0], c.args[2], list(c.args[3:])
        if style == "momentum":
            # linear 0 0 0 zeroes no component: LAMMPS' fix then changes nothing (checked with LAMMPS)
            if len(args) != 5 or args[1] != "linear" or args[2:] not in (["1", "1", "1"], ["0", "0", "0"]):
                raise Refused("numdp lmp accepts `fix ID all momentum N linear 1 1 1` (and `linear 0 0 0`, "
                              "which changes nothing) only")
            if _integer(args[0], "fix momentum N") < 1:
                raise Refused("fix momentum N: N must be > 0 (as LAMMPS)")
            self.momentum_ids.add(fix_id)
            if args[2:] == ["1", "1", "1"]:
                self.s.zero_momentum = True   # numdp zeroes it at the next run's start, and keeps it zero
            return
        if style in THERMOSTAT_FIXES:
            self._thermostat_fix(fix_id, THERMOSTAT_FIXES[style], args)
            return
        if style == "recenter":
            self._recenter(fix_id, args, (c.file, c.line))
            return
        if style == "box/relax":
            self._box_relax(fix_id, args)
            return
        if style == "setforce":
            self._setforce(fix_id, args, (c.file, c.line))
            return
        if style not in ("nve", "nvt", "npt", "nph"):
            raise Refused(f"fix style {style!r} is not supported by numdp lmp (nve, nvt, npt, nph, langevin, "
                          f"temp/csvr, momentum, recenter, box/relax, setforce)")
        if self.s.fix is not None and self.s.fix_id != fix_id:
            raise Refused(f"a second time-integration fix ({self.s.fix_id} is one); numdp integrates with one")
        if self.s.fix is not None and self.s.fix.ensemble.value != style:   # LAMMPS re-specifies a fix of one style
            raise Refused(f"fix {fix_id} is a fix {self.s.fix.ensemble.value}: a fix ID is re-specified with "
                          f"the same style only (LAMMPS); unfix {fix_id} first")
        if self.ran and style != "nve":
            self.note(RENEWED_NOTICE)
        if style == "nve":
            if args:
                raise Refused("expected: fix ID all nve")
            fix = Fix(Ensemble.NVE)
        elif style == "nph":
            fix = Fix(Ensemble.NPH)
            self._chain_keywords(fix, self._barostat_args(fix, args, "nph", "[ptemp T] "), ("pchain", "ptemp"))
        else:
            if len(args) < 4 or args[0] != "temp":
                raise Refused(f"expected: fix ID all {style} temp TSTART TSTOP TDAMP ...")
            t1 = _number(args[1], "Tstart", positive=True)
            t2 = _number(args[2], "Tstop", positive=True)
            fix = Fix(Ensemble(style), temperature=t1 if t1 == t2 else [t1, t2], tdamp=_number(args[3], "Tdamp", positive=True))
            rest = args[4:]
            if style == "npt":
                rest = self._barostat_args(fix, rest, "npt temp T T TDAMP", "[tchain N] ")
            self._chain_keywords(fix, rest, ("tchain", "pchain") if style == "npt" else ("tchain",))
        self.s.fix, self.s.fix_id = fix, fix_id

    def _box_relax(self, fix_id: str, args: list[str]) -> None:
        """fix ID all box/relax keyword value ...: [minimize] box (coupling isotropic / anisotropic /
        triclinic, pressure P bar, vmax V) of the next minimize.

        LAMMPS' keywords are read in order as LAMMPS reads them (iso = x, y, z at P coupled xyz;
        aniso = the same uncoupled; tri = aniso and the tilts xy, xz, yz at 0, unscaled; a later
        keyword overrides an earlier one), then the targets must be one of numdp's three cell
        relaxations: x, y, z all relaxed to one pressure P, coupled xyz (isotropic) or not
        (anisotropic), with the three tilts relaxed to 0 (triclinic) or none of them.  With such
        a hydrostatic target LAMMPS' deviatoric terms vanish, so `x P y P z P` is `aniso P`.
        nreset resets the reference cell of a non-hydrostatic target's strain energy only: no effect
        here.  `dilate all|partial` (the group is all) and `fixedpoint` (numdp scales about the
        origin, LAMMPS about the fixed point: a rigid shift of every atom and the box) change nothing
        numdp computes; tilt scaling (`scalexy` ...) is what numdp does (on, LAMMPS' default, for a
        tilt not relaxed), so `yes` is accepted, and `no` with a tilt not relaxed refused."""
        usage = "fix ID all box/relax iso|aniso|tri P [vmax V] [nreset N] (or x/y/z/xy/xz/yz P, couple, ...)"
        if len(args) < 2:
            raise Refused(f"fix box/relax needs a target pressure: {usage}")
        target: dict[str, float] = {}     # x, y, z, xy, xz, yz -> target pressure, LAMMPS' bar
        couple = "none"
        scale = {"xy": True, "xz": True, "yz": True}
        box: dict = {}
        i = 0
        while i < len(args):
            key = args[i]
            nval = 4 if key == "fixedpoint" else 2
            if i + nval > len(args):
                raise Refused(f"fix box/relax {key}: missing value(s) ({usage})")
            value = args[i + 1]
            if key in ("iso", "aniso", "tri"):
                p = _number(value, f"box/relax {key} Ptarget")
                target.update(x=p, y=p, z=p)
                couple = "xyz" if key == "iso" else "none"
                if key == "tri":
                    target.update(xy=0.0, xz=0.0, yz=0.0)
                    scale = {k: False for k in scale}
            elif key in ("x", "y", "z", "xy", "xz", "yz"):
                target[key] = _number(value, f"box/relax {key} Ptarget")
                if key in scale:
                    scale[key] = False
            elif key == "couple":
                if value not in ("xyz", "xy", "yz", "xz", "none"):
                    raise Refused(f"fix box/relax couple {value}: LAMMPS takes xyz, xy, yz, xz or none")
                couple = value
            elif key == "dilate":
                if value not in ("all", "partial"):
                    raise Refused(f"fix box/relax dilate {value}: LAMMPS takes all or partial")
            elif key == "vmax":
                box["vmax"] = _number(value, "box/relax vmax", positive=True)
            elif key == "nreset":
                if _integer(value, "box/relax nreset") < 0:
                    raise Refused("box/relax nreset N: N must be >= 0 (as LAMMPS)")
            elif key in ("scalexy", "scalexz", "scaleyz"):
                if value not in LAMMPS_LOGICAL:
                    raise Refused(f"fix box/relax {key} {value}: yes or no")
                scale[key[-2:]] = LAMMPS_LOGICAL[value]
            elif key == "fixedpoint":
                for w in args[i + 1:i + 4]:
                    _number(w, "box/relax fixedpoint")
            else:
                raise Refused(f"box/relax keyword {key} is not a keyword of LAMMPS' fix box/relax ({usage})")
            i += nval
        if couple in ("xy", "yz", "xz"):
            raise Refused(f"fix box/relax couple {couple}: numdp relaxes the three lengths together (couple xyz, "
                          f"iso) or apart (couple none, aniso/tri), not two of them coupled")
        tilts = [k for k in ("xy", "xz", "yz") if k in target]
        if set(target) - {"xy", "xz", "yz"} != {"x", "y", "z"} or tilts not in ([], ["xy", "xz", "yz"]):
            relaxed = " ".join(k for k in ("x", "y", "z", "xy", "xz", "yz") if k in target)
            raise Refused(f"fix box/relax relaxing {relaxed} only: numdp relaxes x, y and z (iso/aniso) or all six "
                          f"(tri), not a part of the cell")
        p = target["x"]
        if target["y"] != p or target["z"] != p or any(target[k] != 0.0 for k in tilts):
            raise Refused("fix box/relax with a non-hydrostatic target (different x/y/z pressures or a nonzero "
                          "shear): numdp relaxes to one hydrostatic pressure")
        if tilts and couple == "xyz":
            raise Refused("fix box/relax relaxing the tilts with couple xyz: LAMMPS relaxes them uncoupled (tri)")
        scaled = [k for k in tilts if scale[k]]
        if scaled:
            raise Refused(f"fix box/relax relaxing the {scaled[0]} tilt and scaling it (scale{scaled[0]} yes): LAMMPS "
                          f"refuses both at once")
        if not tilts and not all(scale.values()) and self._triclinic_box():   # (no tilts to scale otherwise)
            unscaled = next(k for k, on in scale.items() if not on)
            raise Refused(f"fix box/relax scale{unscaled} no: numdp scales the tilts with the lengths (LAMMPS' "
                          f"default)")
        if tilts and not self._triclinic_box():
            raise Refused("fix box/relax relaxing the tilts of a box LAMMPS holds orthogonal (LAMMPS refuses it too: "
                          "Cannot specify Pxy/Pxz/Pyz in fix box/relax with non-triclinic box): give `change_box all "
                          "triclinic` before it, or an `xy xz yz` line in the data file")
        coupling = "triclinic" if tilts else ("isotropic" if couple == "xyz" else "anisotropic")
        box = {"coupling": coupling, "pressure": lammps_bar(p), **box}   # the P_t (eV/Å³) of LAMMPS' units metal constants
        if self.s.box_relax is not None and self.s.box_relax[0] != fix_id:
            raise Refused(f"a second fix box/relax ({self.s.box_relax[0]} is one)")
        self.s.box_relax = (fix_id, box)

    def _setforce(self, fix_id: str, args: list[str], where: tuple) -> None:
        """fix ID all setforce FX FY FZ, each 0 (that force component set to zero after every force
        evaluation) or NULL (left alone): [minimize] fixed_directions of the next minimize (a run
        with it: tables).  A nonzero value (an external force without energy; LAMMPS refuses it
        in a minimization too), a variable and the region keyword are refused."""
        if len(args) < 3:
            raise Refused("expected: fix ID all setforce FX FY FZ (each 0 or NULL)")
        values = args[:3]
        if any(v != "NULL" and not _is_zero(v) for v in values):
            raise Refused(f"setforce {' '.join(values)}: numdp sets force components to 0 (or leaves them, NULL) "
                          f"only, in a minimization: a nonzero force is an external force without energy")
        if args[3:]:
            raise Refused(f"setforce keyword {args[3]}: not supported by numdp lmp (the fix acts on every atom)")
        if self.s.setforce is not None and self.s.setforce[0] != fix_id:
            raise Refused(f"a second fix setforce ({self.s.setforce[0]} is one)")
        self.s.setforce = (fix_id, [a for a, v in zip("xyz", values) if v != "NULL"], where)

    def _triclinic_box(self, s: "_State | None" = None) -> bool:
        """Whether LAMMPS holds the box triclinic (its dumps then write tilt bounds, zero tilts too):
        after `change_box all triclinic`, or made by a data file with an `xy xz yz` line; a
        checkpoint of numdp lmp that wrote tilt bounds (read_restart: `_checkpoint_output`)."""
        s = self.s if s is None else s
        return s.triclinic or (s.data_header is not None and s.data_header.triclinic)

    @staticmethod
    def origin(s: _State) -> BoxOrigin | None:
        """Where LAMMPS holds the lower corner of the box of the state `s`: a data file's box from
        its xlo ylo zlo (replicated: the same corner, the box's lengths times the replicas); after
        read_restart, the one of the run that wrote the checkpoint (its stored [output] box_center);
        create_box's, its region's lower corner (lattice spacings times its bounds); None: a data
        file numdp could not read.  A box from 0 has one too: LAMMPS changes a box (fix npt, fix
        box/relax) about its centre, so its corner leaves 0."""
        if s.restart_file is not None:   # the corner of the run that wrote the checkpoint
            return s.restart_origin
        start = _start_box(s)
        if start is None:
            return None
        lo, cell = start
        if "p" not in s.boundary:   # an open system: numdp holds no cell; LAMMPS' box never changes
            return BoxOrigin.at_corner(lo)
        return BoxOrigin.of_box(lo, np.diag(cell))

    @staticmethod
    def open_cell(s: _State) -> np.ndarray | None:
        """`Translation.open_cell` of the state `s`: LAMMPS' box of a data file's or create_box's
        open system (`boundary f f f`), None otherwise."""
        start = None if "p" in s.boundary or s.restart_file is not None else _start_box(s)
        return None if start is None else start[1]

    def _recenter(self, fix_id: str, args: list[str], where: tuple) -> None:
        """fix ID all recenter X Y Z with each of X Y Z INIT (the centre of mass where the run
        starts) or NULL (that direction left alone) [shift all] [units box|lattice|fraction]: it
        keeps the centre of mass where it is, as numdp's dynamics do when the total momentum is zero
        (checked with the tables: RECENTER_MESSAGE).  A point to move it to is refused."""
        if len(args) < 3:
            raise Refused("expected: fix ID all recenter INIT|NULL INIT|NULL INIT|NULL [shift all] [units ...]")
        if any(a not in ("INIT", "NULL") for a in args[:3]):
            raise Refused(f"recenter {' '.join(args[:3])}: numdp moves no atom to a point; INIT (keep the centre "
                          f"of mass where the run starts) and NULL are accepted")
        rest = args[3:]
        while rest:
            if len(rest) > 1 and ((rest[0] == "shift" and rest[1] == "all")
                                  or (rest[0] == "units" and rest[1] in ("box", "lattice", "fraction"))):
                rest = rest[2:]
            else:
                raise Refused(f"recenter keyword {' '.join(rest[:2])} is not supported by numdp lmp (shift all, units "
                              f"are)")
        if self.s.recenter is not None and self.s.recenter[0] != fix_id:
            raise Refused(f"a second fix recenter ({self.s.recenter[0]} is one)")
        self.s.recenter = (fix_id, where)

    def _momentum_zeroed(self, s: _State) -> bool:
        """Whether numdp starts the run of state `s` with a zero total momentum (which its fixes keep):
        velocity create, velocity all zero linear or fix momentum before it, or numdp's Langevin."""
        if s.zero_momentum or (s.thermostat is not None and s.thermostat.style is ThermostatStyle.LANGEVIN):
            return True
        if s.continues is not None:   # a later run goes on from the first run's end
            return self.first is not None and self._momentum_zeroed(self.first)
        return s.velocity is not None and s.restart_file is None

    @staticmethod
    def _chain_keywords(fix: Fix, rest: list[str], keywords: tuple[str, ...]) -> None:
        """`tchain N` (>= 1), `pchain N` (>= 0, as LAMMPS) and `ptemp T` (> 0), those of `keywords`,
        into `fix`; LAMMPS' defaults of its other keywords (DEFAULT_KEYWORDS: `tloop 1`, `drag 0`,
        and with a barostat `ploop 1`, `mtk yes`, `dilate all`, `couple none`) are accepted, as is
        `couple xyz` with aniso (LAMMPS' iso); any other keyword or value is refused."""
        barostat = fix.coupling is not None
        accepted = set(keywords) | {"tloop", "drag"} if fix.temperature is not None else set(keywords) | {"drag"}
        if barostat:
            accepted |= {"ploop", "mtk", "dilate", "couple"}
        while rest:
            if rest[0] in accepted and len(rest) > 1:
                word, value = rest[0], rest[1]
                rest = rest[2:]
                if word == "ptemp":
                    fix.ptemp = _number(value, "ptemp", positive=True)
                elif word in ("tchain", "pchain"):
                    n = _integer(value, word)
                    least = 1 if word == "tchain" else 0
                    if n < least:
                        raise Refused(f"{word} must be >= {least}")
                    if word == "tchain":
                        fix.chain = n
                    else:
                        fix.pchain = n
                elif word == "couple" and value == "xyz" and fix.coupling in ("isotropic", "anisotropic"):
                    fix.coupling = "isotropic"   # LAMMPS: aniso with couple xyz is iso
                elif word == "couple" and value == "none" and fix.coupling != "isotropic":
                    pass
                elif word not in ("couple", "ptemp", "tchain", "pchain") and (
                        value == DEFAULT_KEYWORDS[word]
                        or (word == "drag" and is_number(value) and float(value) == 0.0)):
                    pass
                else:
                    raise Refused(f"{word} {value}: numdp lmp runs LAMMPS' default {word} "
                                  f"{'none (xyz with aniso)' if word == 'couple' else DEFAULT_KEYWORDS[word]} only")
            else:
                others = sorted(accepted - set(keywords))
                raise Refused(f"keyword {rest[0]!r} is not supported by numdp lmp ({' and '.join(keywords)} "
                              f"{'are' if len(keywords) > 1 else 'is'}; {', '.join(others)} at LAMMPS' defaults)")

    @staticmethod
    def _barostat_args(fix: Fix, args: list[str], head: str, chains: str) -> list[str]:
        """The `iso|aniso|tri Pstart Pstop Pdamp` of fix npt / nph into `fix`; returns the rest."""
        if len(args) < 4 or args[0] not in COUPLINGS:
            raise Refused(f"expected: fix ID all {head} iso|aniso|tri P P PDAMP {chains}[pchain N] "
                          f"(x, y, z, xy, ... are not supported)")
        p1 = _number(args[1], "Pstart")
        p2 = _number(args[2], "Pstop")
        fix.pressure, fix.pdamp, fix.coupling = (p1 if p1 == p2 else [p1, p2], _number(args[3], "Pdamp", positive=True),
                                                 COUPLINGS[args[0]])
        return args[4:]

    def _thermostat_fix(self, fix_id: str, style: ThermostatStyle, args: list[str]) -> None:
        """fix langevin / temp/csvr Tstart Tstop damp seed: numdp's thermostat of that kind (with
        fix nve: checked when the tables are made)."""
        if self.s.thermostat is not None and self.s.thermostat.fix_id == fix_id and self.s.thermostat.style != style:
            raise Refused(f"fix {fix_id} is a fix {self.s.thermostat.style.value}: a fix ID is re-specified with "
                          f"the same style only (LAMMPS); unfix {fix_id} first")
        if self.s.thermostat is not None and self.s.thermostat.fix_id != fix_id:
            raise Refused(f"a second thermostat fix ({self.s.thermostat.fix_id} is one)")
        if len(args) < 4:
            name = next(k for k, v in THERMOSTAT_FIXES.items() if v is style)
            raise Refused(f"expected: fix ID all {name} TSTART TSTOP DAMP SEED")
        langevin = style is ThermostatStyle.LANGEVIN
        t1 = _number(args[0], "Tstart", nonnegative=langevin, positive=not langevin)
        t2 = _number(args[1], "Tstop", nonnegative=langevin, positive=not langevin)
        damp = _number(args[2], "damp", positive=True)
        seed = _integer(args[3], "seed")
        if seed < 1:
            raise Refused(f"seed must be > 0 (as LAMMPS), got {seed}")
        rest = args[4:]
        self.langevin_zero = "no"   # LAMMPS' default
        while rest:
            if langevin and rest[0] == "zero" and len(rest) > 1 and rest[1] in ("yes", "no"):
                self.langevin_zero = rest[1]   # numdp keeps the total momentum zero either way (the notice)
                rest = rest[2:]
            else:
                raise Refused(f"keyword {rest[0]!r} is not supported by numdp lmp"
                              + (" (zero is)" if langevin else ""))
        self.s.thermostat = ThermostatFix(style, t1 if t1 == t2 else [t1, t2], damp, seed, fix_id)
        if langevin:
            self.note(LANGEVIN_NOTICE.format(zero=LANGEVIN_ZERO[self.langevin_zero]))

    def _timestep(self, c: Command) -> None:
        if len(c.args) != 1:
            raise Refused("expected: timestep DT")
        self.s.timestep = _number(c.args[0], "timestep", positive=True)

    def _thermo(self, c: Command) -> None:
        if len(c.args) != 1:
            raise Refused("expected: thermo N")
        self.s.thermo = _integer(c.args[0], "thermo")

    def _thermo_modify(self, c: Command) -> None:
        """The thermo_modify keywords that change nothing numdp prints: flush (numdp flushes every
        line), lost error|ignore|warn (numdp loses no atom: periodic directions wrap them, and along
        an `f` direction numdp keeps the atoms LAMMPS would lose), lost/bond (no bonds), norm no
        (LAMMPS' default in units metal), line one, temp / press of the computes thermo uses anyway."""
        args = list(c.args)
        allowed = {"flush": ("yes", "no"), "lost": ("error", "ignore", "warn"), "lost/bond": ("error", "ignore", "warn"),
                   "norm": ("no",), "line": ("one",)}
        if not args:
            raise Refused("expected: thermo_modify KEYWORD VALUE ...")
        while args:
            key = args[0]
            if key == "format":   # format line "F ..." | int F | float F | N F | none
                width = 2 if args[1:2] == ["none"] else 3
                if len(args) < width or (width == 3 and args[1] not in ("line", "int", "float")
                                         and not _column_index(args[1])):
                    raise Refused("expected: thermo_modify format line \"FORMATS\" | int FORMAT | float FORMAT | "
                                  "N FORMAT | none")
                args = args[width:]
                self.note(FORMAT_NOTICE)
                continue
            value = args[1] if len(args) > 1 else None
            if key == "norm" and value == "yes":
                raise Refused("thermo_modify norm yes: not supported by numdp lmp: numdp prints extensive quantities as totals (norm no, LAMMPS' default in "
                              "units metal); delete it and divide by the number of atoms")
            if key in ("temp", "press") and value is not None:
                if self.computes.get(value) != key:
                    raise Refused(f"{key} {value}: numdp's {key} is thermo_{key}'s (of every atom); numdp lmp "
                                  f"accepts {key} ID of a `compute ID all {key}` only")
                args = args[2:]
                continue
            if value not in allowed.get(key, ()):
                raise Refused(f"thermo_modify {key} {value}: not supported by numdp lmp (flush yes|no, lost "
                              f"error|ignore|warn, lost/bond, norm no, line one, format, temp and press of thermo's "
                              f"computes are: they change nothing numdp computes)")
            args = args[2:]

    def _thermo_style(self, c: Command) -> None:
        """thermo_style one | custom KEYWORDS: numdp's [output] thermo_columns (numdp.md.thermo);
        a keyword numdp does not compute, or multi / yaml: numdp's own columns and a notice."""
        from ..md.thermo import DEFAULT_COLUMNS, KEYWORDS

        if not c.args or c.args[0] not in ("one", "multi", "yaml", "custom") or (c.args[0] == "custom") != (len(c.args) > 1):
            raise Refused("expected: thermo_style one|multi|yaml|custom KEYWORD ...")
        words = THERMO_ONE if c.args[0] == "one" else list(c.args[1:])   # (none for multi, yaml)
        computed = [w for w in words if w[:2] == "c_" and w[2:] in self.computes]
        words = [self.computes[w[2:]] if w in computed else w for w in words]
        missing = [w for w in words if w not in KEYWORDS]
        if c.args[0] in ("one", "custom") and not missing:
            self.s.thermo_columns = list(dict.fromkeys(words))   # numdp prints a quantity once
            if computed:
                self.note(COMPUTE_NOTICE.format(columns=" ".join(computed)))
            if len(self.s.thermo_columns) < len(words):
                twice = [w for w in c.args[1:] if w not in self.s.thermo_columns and words.count(
                    self.computes.get(w[2:], w)) > 1]
                self.note(REPEAT_NOTICE.format(columns=" ".join(twice or words)))
            return
        self.s.thermo_columns = None
        self.note(f"thermo_style {c.args[0]}: numdp writes its own thermo columns {' '.join(DEFAULT_COLUMNS)}"
                  + (f" (it does not compute {' '.join(missing)})" if missing else ""))

    def _compute(self, c: Command) -> None:
        """`compute ID all temp|pe|ke` (no keywords): the quantity of the thermo keyword of the same
        name (LAMMPS' thermo_temp and thermo_pe are such computes; its ke is the kinetic energy,
        as the compute's), printed by thermo_style as c_ID; other computes refused."""
        if len(c.args) < 3:
            raise Refused("expected: compute ID all STYLE")
        _all_group(c.args, "compute", self.groups)
        if c.args[0] in self.computes:
            raise Refused(f"compute ID {c.args[0]!r} is defined already (LAMMPS refuses it too)")
        if c.args[2] not in ("temp", "pe", "ke") or len(c.args) > 3:
            raise Refused(f"compute {' '.join(c.args[2:])}: numdp lmp accepts `compute ID all temp|pe|ke` only "
                          f"(their values are numdp's thermo keywords of those names, for thermo_style c_ID)")
        self.computes[c.args[0]] = c.args[2]

    def _uncompute(self, c: Command) -> None:
        if len(c.args) != 1 or c.args[0] not in self.computes:
            raise Refused(f"expected: uncompute ID of a compute ({' '.join(self.computes)})")
        del self.computes[c.args[0]]

    def _dump(self, c: Command) -> None:
        self._need_box("dump")
        _all_group(c.args, "dump", self.groups)
        if self.s.dump is not None and self.reopen is None:
            raise Refused(f"a second dump ({self.s.dump_id} is one{', defined before the minimize' if self.ran and not self.dump_after_minimize else ''}"
                          f"); numdp writes one trajectory")
        dump = self._dump_spec(c)
        if self.reopen is not None:
            self._redump(c.args[0], dump)
            return
        self.s.dump = dump
        self.s.dump_id, self.s.dump_line = c.args[0], (c.file, c.line)
        self.dump_after_minimize = self.ran   # (__call__: after a run only between a minimize and a run)

    def _dump_spec(self, c: Command) -> Dump:
        """The Dump of a `dump ID all STYLE N FILE ...` line."""
        style = "custom"
        if c.args[2:3] == ("atom",) and len(c.args) == 5:   # LAMMPS' atom style: scaled coordinates
            columns = ["id", "type", "xs", "ys", "zs"]
        elif c.args[2:3] == ("xyz",) and len(c.args) == 5:
            if "*" in c.args[4] or "%" in c.args[4]:
                raise Refused("dump xyz: numdp writes one extended XYZ file (no * or % in its name)")
            columns, style = ["element", "x", "y", "z"], "xyz"
            self.note(XYZ_NOTICE)
        elif len(c.args) < 6 or c.args[2] != "custom":
            raise Refused("numdp lmp supports `dump ID all custom N FILE COLUMNS...`, `dump ID all atom N "
                          "FILE` and `dump ID all xyz N FILE` only")
        else:
            columns = list(c.args[5:])
        from ..io.trajectory import DUMP_COLUMNS

        for col in columns:
            if col not in DUMP_COLUMNS:
                raise Refused(f"column {col!r} is not supported by numdp lmp ({' '.join(DUMP_COLUMNS)} are)")
        if len(set(columns)) != len(columns):
            raise Refused("a column is named twice")
        every = _integer(c.args[3], "N")
        if every == 0:
            raise Refused("N must be > 0")
        return Dump(every, c.args[4], columns, style)

    def _undump(self, c: Command) -> None:
        """undump ID: before any run it deletes the dump; after a run numdp's dump goes on over the
        later runs, so the same `dump ID ...` and `dump_modify ID append yes` must follow before the
        next run (DP-GEN 0.14's relaxation: undump, reset_timestep 0, dump, dump_modify append yes
        between its minimizes), or the script ends."""
        if len(c.args) != 1:
            raise Refused("expected: undump ID")
        if self.s.dump_id is None or c.args[0] != self.s.dump_id or self.reopen is not None:
            raise Refused(f"no dump with ID {c.args[0]!r} (LAMMPS refuses it too)")
        if not self.ran:
            self.s.dump, self.s.dump_id, self.s.dump_elements = None, None, None
            return
        self.reopen = _Reopen(self.s.dump_id, self.s.dump, (c.file, c.line))

    def _redump(self, dump_id: str, dump: Dump) -> None:
        """`dump ID ...` after a run: the dump `undump ID` closed, the same again."""
        r = self.reopen   # (__call__: only after an undump)
        if r.defined:
            raise Refused(f"a second dump {dump_id} after undump {r.dump_id}: numdp writes one trajectory")
        if dump_id != r.dump_id or dump != r.dump:
            raise Refused(f"dump after a run differs from dump {r.dump_id} before it (numdp writes one trajectory, "
                          f"which goes on over the runs: give the same ID, N, file and columns)")
        r.defined = True

    def _dump_modify(self, c: Command) -> None:
        """`dump_modify ID sort id` (numdp's order), `append yes|no` (DP-GEN's merged trajectory
        after read_restart: numdp's restart continues the dump, frames after the checkpoint's step
        dropped) and `element E1 ... En` (the names of the element column: accepted when they are
        the script's elements of the types, which numdp writes; checked with the tables)."""
        usage = ("numdp lmp accepts `dump_modify ID sort id`, `dump_modify ID append yes|no` and `dump_modify ID "
                 "element E1 ... En` only (numdp writes atoms in id order)")
        args = list(c.args[1:])
        if not args:
            raise Refused(usage)
        if self.s.dump_id is None or c.args[0] != self.s.dump_id:
            raise Refused(f"no dump with ID {c.args[0]!r} (LAMMPS refuses it too)")
        while args:
            key, value = args[0], args[1] if len(args) > 1 else None
            if key == "element":
                k = 1
                while k < len(args) and args[k] not in _DUMP_MODIFY_KEYWORDS:
                    k += 1
                if k == 1:
                    raise Refused("element needs the element of each atom type")
                self.s.dump_elements, self.s.dump_elements_line = args[1:k], (c.file, c.line)
                args = args[k:]
                continue
            args = args[2:]
            if key == "sort" and value == "id":
                continue
            if key != "append" or value not in ("yes", "no"):
                raise Refused(usage)
            if self.reopen is not None and self.reopen.defined:
                if value != "yes":
                    raise Refused(self.reopen.pending())
                self.reopen = None
            elif self.ran and not self.dump_after_minimize:   # (__call__: only after an undump)
                raise Refused(f"dump_modify {key} after undump {c.args[0]}: give the same `dump {c.args[0]} ...` "
                              f"first, then `dump_modify {c.args[0]} append yes`")
            elif self.s.restart_file is None and value == "yes":
                self.note("dump_modify append yes: a new run keeps an existing dump file as #FILE.N# and writes a "
                          "new one (LAMMPS appends to it); after read_restart numdp continues the dump")
            elif self.s.restart_file is not None and value == "no":
                self.note("dump_modify append no: after read_restart numdp continues the dump (frames after the "
                          "checkpoint's step dropped), where LAMMPS starts the file again")

    def _restart(self, c: Command) -> None:
        if len(c.args) == 1 and c.args[0] == "0":
            self.s.checkpoint_every = 0
            return
        if len(c.args) != 2:
            raise Refused("numdp lmp supports `restart N ROOT` (one root: numdp checkpoints ROOT.STEP), not "
                          "two toggled files or keywords")
        every, root = _integer(c.args[0], "N"), c.args[1]
        if "%" in root:
            raise Refused("a root with % (one file per processor) is not supported by numdp lmp")
        # LAMMPS appends the step to a root without a *: ROOT.STEP (what DP-GEN looks for)
        self.s.checkpoint_every = every
        self.s.checkpoint = root if is_series(root) else f"{root}.{MARK}"

    def _log(self, c: Command) -> None:
        if len(c.args) != 1:
            raise Refused("expected: log FILE|none")
        self.s.log = "" if c.args[0] == "none" else c.args[0]

    def _run(self, c: Command) -> None:
        self._need_box("run")
        if not c.args:
            raise Refused("expected: run N [upto] [start M] [stop M] [pre yes|no] [post yes|no]")
        n = _integer(c.args[0], "N")
        upto, bounds, rest = False, {}, list(c.args[1:])
        while rest:
            if rest[0] == "upto":
                upto, rest = True, rest[1:]
            elif rest[0] in ("pre", "post") and len(rest) > 1 and rest[1] in ("yes", "no"):
                rest = rest[2:]   # the setup and the summary: what LAMMPS prints, not the dynamics
            elif rest[0] in ("start", "stop") and len(rest) > 1:
                bounds[rest[0]], rest = _integer(rest[1], rest[0]), rest[2:]
            else:
                raise Refused(f"run keyword {rest[0]!r} is not supported by numdp lmp (upto, start, stop, pre, "
                              f"post are)")
        if self.ran:
            self._next_run()
        start = self.s.steps if self.ran else self.s.restart_step or 0
        if upto and n < start:
            raise Refused(f"run {n} upto: the {'run before' if self.ran else 'restart'} ends at step {start} already")
        self.s.steps = n if upto else start + n
        self.s.run_steps = self.s.steps - start
        if bounds:
            self._run_bounds(bounds, start)
        if self.ran:
            self.runs.append(copy.deepcopy(self.s))
        else:
            self.first = copy.deepcopy(self.s)
        self.ran = True
        self.s.zero_momentum = False   # done at that run's start

    def _run_bounds(self, bounds: dict, start: int) -> None:
        """run ... start M stop M: the steps a ramp of this run spans (LAMMPS: M <= the first step,
        M >= the last); without a ramp they change nothing, with one they are refused (numdp ramps
        from step 0 to the run's end)."""
        if bounds.get("start", start) > start or bounds.get("stop", self.s.steps) < self.s.steps:
            raise Refused(f"run start/stop must span the run's steps {start}-{self.s.steps} (LAMMPS refuses "
                          f"it too)")
        if _ramps(self.s) and (bounds.get("start", 0) != 0 or bounds.get("stop", self.s.steps) != self.s.steps):
            raise Refused("run start/stop with a temperature or pressure ramp: numdp ramps from step 0 to the "
                          "run's last step")

    def _next_run(self) -> None:
        """A run after the first: it continues from the final checkpoint of the run before (a
        restart with the script's current fixes, timestep and thermo)."""
        s = self.s
        if s.minimize is not None:
            self._after_minimize()
            return
        if s.restart_file is not None:
            raise Refused("several runs after read_restart: numdp lmp restarts a script of one run")
        root = s.checkpoint if s.checkpoint is not None else "checkpoint.h5"
        s.continues = str(series_file(root, s.steps)) if is_series(root) else root

    def _after_minimize(self) -> None:
        """A run after the script's minimize(s): as LAMMPS, it starts from the state the minimize
        stopped with, at its step (or reset_timestep's), with the velocities LAMMPS' atoms have then:
        cg / sd leave them as they were before the minimize (the data file's Velocities, velocity
        create's: numdp's draw), a velocity create after the minimize replaces them.  The state is
        an MD checkpoint numdp lmp writes after the minimize (`MdStart`).  The step the minimize
        stops at is known once it ran (`minimize_stop`; before, the translation takes MAXITER
        iterations)."""
        s = self.s
        if s.restart_file is not None:
            raise Refused("run after minimize after read_restart: numdp lmp restarts a script of one run or "
                          "minimize (write_data after the minimize and read_data that file in a second script)")
        if s.min_style == "fire" and not s.min_style_velocity:
            raise Refused("run after min_style fire: LAMMPS' atoms start the run with FIRE's last velocities, "
                          "which numdp's FIRE does not keep (it ends at rest); add `velocity all create T SEED` "
                          "after the minimize, or use min_style cg")
        if s.reset_step is not None and s.dump is not None and not self.dump_after_minimize:
            raise Refused(f"run after reset_timestep {s.reset_step} with dump {s.dump_id} (re-opened after undump): "
                          f"numdp's dump goes on over the runs and would drop the minimize's frames after step "
                          f"{s.reset_step}; leave out the reset_timestep, or the dump")
        root = s.checkpoint if s.checkpoint is not None else "checkpoint.h5"
        stem = root.replace(f".{MARK}", "").replace(MARK, "")
        stem = stem[:-3] if stem.endswith(".h5") else stem
        if s.reset_step is not None:
            start = s.reset_step
        else:
            start = self.minimize_stop if self.minimize_stop is not None else s.steps
        minimized = self.runs[-1] if self.runs else self.first   # the state at the last minimize
        self.md_start = MdStart(len(self.runs), f"{stem}.minimized.h5", s.reset_step, s.timestep,
                                None if s.velocity is None else (lammps_kelvin(s.velocity[0]), s.velocity[1]),
                                s.data_file if s.created is None else None, s.replicate, minimized.timestep,
                                s.dump.file if self.dump_after_minimize else None)
        s.continues = self.md_start.file
        s.minimize = None
        s.steps = start

    def _min_style(self, c: Command) -> None:
        if len(c.args) != 1:
            raise Refused("expected: min_style STYLE")
        if c.args[0] not in _MIN_STYLES:
            raise Refused(f"min_style {c.args[0]}: not supported by numdp lmp (cg, sd and fire are)")
        if self.s.min_modify:   # LAMMPS makes a new minimizer: every min_modify setting at its default
            self.note(f"min_modify {', '.join(self.s.min_modify)} before min_style {c.args[0]}: reset to "
                      f"LAMMPS' defaults by min_style (as LAMMPS); give min_modify after min_style")
        self.s.min_style = c.args[0]
        self.s.min_modify = {}

    def _min_modify(self, c: Command) -> None:
        args = list(c.args)
        if not args or len(args) % 2:
            raise Refused("expected: min_modify KEYWORD VALUE ...")
        for key, value in zip(args[::2], args[1::2]):
            if key in _MIN_NUMBERS:
                self.s.min_modify[key] = _number(value, key)
            elif key in _MIN_INTEGERS:
                self.s.min_modify[key] = _integer(value, key)
            elif key in ("halfstepback", "initialdelay") and value in ("yes", "no"):
                self.s.min_modify[key] = value == "yes"
            elif key == "norm" and value in ("two", "max", "inf"):
                self.s.min_modify[key] = value
            elif key == "integrator" and value == "eulerimplicit":
                self.s.min_modify[key] = value
            elif key == "line" and value in ("quadratic", "backtrack"):
                self.s.min_modify[key] = value
            else:
                raise Refused(f"min_modify {key} {value}: not supported by numdp lmp (dmax, norm, line quadratic "
                              f"or backtrack, and FIRE's tmax, tmin, delaystep, dtgrow, dtshrink, alpha0, "
                              f"alphashrink, vdfmax, halfstepback, initialdelay, integrator eulerimplicit are)")

    def _minimize(self, c: Command) -> None:
        """`minimize etol ftol maxiter maxeval` with `min_style cg` (LAMMPS' default), `sd` or `fire`:
        numdp's [minimize] of that style (docs/md.md#energy-minimization)."""
        self._need_box("minimize")
        if self.ran and self.s.minimize is None:
            raise Refused("minimize after a run: numdp lmp minimizes before any run (write_data after the run "
                          "and read_data that file in a second script to minimize its state)")
        if len(c.args) != 4:
            raise Refused("expected: minimize ETOL FTOL MAXITER MAXEVAL")
        if self.s.box_relax is not None and self.s.min_style == "fire":
            raise Refused(f"fix {self.s.box_relax[0]} box/relax with min_style fire: LAMMPS relaxes the box with "
                          f"the line-search styles only (cg, sd)")
        if self.s.box_relax is not None and self.s.fix is not None and self.s.fix.ensemble in (Ensemble.NPT, Ensemble.NPH):
            raise Refused(f"fix {self.s.box_relax[0]} box/relax and fix {self.s.fix_id} {self.s.fix.ensemble.value} both "
                          f"change the box (LAMMPS refuses it too: multiple fixes change box parameter): unfix one")
        etol, ftol = _number(c.args[0], "etol", nonnegative=True), _number(c.args[1], "ftol", nonnegative=True)
        maxiter, maxeval = _integer(c.args[2], "maxiter"), _integer(c.args[3], "maxeval")
        if maxeval < maxiter and self.s.min_style == "fire":   # LAMMPS' FIRE never checks maxeval
            self.note(f"minimize maxeval {maxeval} < maxiter {maxiter}: min_style fire does not stop on "
                      f"maxeval (as LAMMPS)")
        if self.ran and self.dump_after_minimize:
            raise Refused(f"minimize after dump {self.s.dump_id}, which is defined after a minimize: numdp's dump "
                          f"belongs to the run after the last minimize; define it there, or before the first")
        if self.ran:   # a minimize after a minimize: a new one from the state the one before ended with
            self._next_minimize(etol, ftol, maxiter, maxeval)
            return
        start = self.s.restart_step or 0
        self.s.minimize = {"steps": start + maxiter, "etol": etol, "ftol": ftol}
        if self.s.min_style != "fire":
            self.s.minimize["maxeval"] = maxeval
        self.s.steps = start + maxiter
        self.first = copy.deepcopy(self.s)
        self.ran = True

    def _next_minimize(self, etol: float, ftol: float, maxiter: int, maxeval: int) -> None:
        """A minimize after a minimize: LAMMPS makes a new minimizer (no memory of the one before:
        cg starts along the forces, a fix box/relax takes the cell then as its reference) from the
        state and step the one before stopped at.  numdp: a later run whose [system] file is the
        final checkpoint of the one before, with [minimize] anew (its steps: maxiter iterations
        from that checkpoint's step; the translation's steps assume the one before ran its
        maxiter, the run's own end is the checkpoint's step + maxiter)."""
        s = self.s
        if s.restart_file is not None:
            raise Refused("several minimizes after read_restart: numdp lmp restarts a script of one minimize")
        if s.reset_step is not None:   # DP-GEN 0.14's relaxation: undump, reset_timestep 0, dump, minimize
            self.note(f"reset_timestep {s.reset_step} before a minimize: numdp's steps go on from the step the "
                      f"minimize before stopped at (LAMMPS renumbers them from {s.reset_step}), in the log and the "
                      f"dump; a minimization does not depend on the step")
            s.reset_step = None
        root = s.checkpoint if s.checkpoint is not None else "checkpoint.h5"
        s.continues = str(series_file(root, s.steps)) if is_series(root) else root
        s.minimize = {"steps": maxiter, "etol": etol, "ftol": ftol, "anew": True}
        if s.min_style != "fire":
            s.minimize["maxeval"] = maxeval
        s.steps += maxiter
        s.run_steps = maxiter
        s.min_style_velocity = False   # (FIRE ends with its own velocities again: a velocity create after it)
        self.runs.append(copy.deepcopy(s))

    def _minimize_table(self, s: _State) -> dict:
        """[minimize] of the script's min_style, minimize and min_modify: LAMMPS accepts every
        min_modify keyword with every style and ignores those of another style's; so does numdp lmp
        (with a note)."""
        fire = s.min_style == "fire"
        unused = [k for k in s.min_modify if k in (LINE_KEYS if fire else FIRE_KEYS)]
        if unused:
            self.note(f"min_modify {', '.join(unused)}: not used by min_style {s.min_style} (as LAMMPS)")
        keys = {k: v for k, v in s.min_modify.items() if k not in unused}
        if s.box_relax is not None:   # (with min_style cg or sd: _minimize)
            keys["box"] = dict(s.box_relax[1])
        if s.setforce is not None and s.setforce[1]:   # (setforce NULL NULL NULL changes nothing)
            keys["fixed_directions"] = list(s.setforce[1])
        return {"style": s.min_style, **s.minimize, **({"timestep": s.timestep} if fire else {}), **keys}

    def _written(self, kind: WriteKind, file: str) -> None:
        """A state to write after the run just made (the last `run` / `minimize` command)."""
        if not self.ran:
            raise Refused(f"{kind.value} before run / minimize: numdp lmp writes the state a run ends with "
                          f"(put {kind.value} after it)")
        self.writes.append(Written(len(self.runs), kind, file))

    def _write_restart(self, c: Command) -> None:
        """write_restart FILE after a run: the state it ended with as a numdp checkpoint (read_restart
        reads it), not a LAMMPS binary restart file."""
        if len(c.args) != 1:
            raise Refused("expected: write_restart FILE (no keywords)")
        if "%" in c.args[0] or "*" in c.args[0]:
            raise Refused("a file name with % or * is not supported by numdp lmp's write_restart")
        self._written(WriteKind.RESTART, c.args[0])

    def _write_data(self, c: Command) -> None:
        """write_data FILE [nocoeff] [nofix] [nolabelmap] after a run: the state it ended with."""
        if not c.args or any(a not in ("nocoeff", "nofix", "nolabelmap") for a in c.args[1:]):
            raise Refused("expected: write_data FILE [nocoeff] [nofix] [nolabelmap] (numdp writes positions, "
                          "box, types, masses and velocities)")
        elements = self.s.elements
        if elements is not None and len(set(elements)) != len(elements):
            raise Refused(f"pair_coeff gives one element to several types ({' '.join(elements)}): numdp keeps "
                          f"the element of each atom, not its LAMMPS type, so it cannot write the types back")
        self._written(WriteKind.DATA, c.args[0])

    def _unfix(self, c: Command) -> None:
        if len(c.args) != 1:
            raise Refused("expected: unfix ID")
        if self.s.fix is not None and self.s.fix_id == c.args[0]:
            self.s.fix = self.s.fix_id = None
        elif self.s.thermostat is not None and self.s.thermostat.fix_id == c.args[0]:
            self.s.thermostat = None
        elif self.s.recenter is not None and self.s.recenter[0] == c.args[0]:
            self.s.recenter = None
        elif self.s.box_relax is not None and self.s.box_relax[0] == c.args[0]:
            self.s.box_relax = None
        elif self.s.setforce is not None and self.s.setforce[0] == c.args[0]:
            self.s.setforce = None
        elif c.args[0] not in self.momentum_ids:
            raise Refused(f"no fix with ID {c.args[0]!r}")

    # -- the tables -------------------------------------------------------------------------------
    def tables(self, s: _State | None = None) -> dict:
        """numdp run's tables of the run whose state (`first`, `runs`) is `s`; None: the script's
        state at its end (a script without a run: the error that says so)."""
        s = self.s if s is None else s
        if s.units != "metal":
            raise Refused("the script sets no `units metal` (LAMMPS' default is lj); numdp lmp runs units metal")
        if not s.models:
            raise Refused("the script has no pair_style deepmd")
        if not s.pair_coeff:
            raise Refused("the script has no `pair_coeff * *` (LAMMPS refuses to run without it)")
        if s.steps is None:
            raise Refused("the script has no run or minimize command: nothing to do")
        fix = s.fix
        if fix is None and s.minimize is None and s.run_steps == 0:
            fix = Fix(Ensemble.NVE)   # run 0: the start state evaluated (LAMMPS: "atoms won't move")
        if fix is None and s.minimize is None:
            raise Refused("the script has no fix nve, nvt, npt or nph: LAMMPS would not move the atoms; numdp lmp "
                          "needs one")
        self._check_dump_types(s)
        self._check_dump_elements(s)
        if s.setforce is not None and s.minimize is None:
            raise _LineRefused(s.setforce[2], "fix", "fix setforce in a run (MD): numdp fixes force components in a "
                                                     "minimization only; unfix it before the run")
        if s.recenter is not None and s.minimize is None and not self._momentum_zeroed(s):
            raise _LineRefused(s.recenter[1], "fix", RECENTER_MESSAGE)
        if s.recenter is not None and fix is not None and fix.ensemble in (Ensemble.NPT, Ensemble.NPH):
            self.note(RECENTER_BOX_NOTICE)
        devi = len(s.models) > 1
        t: dict = {"model": {"file": s.models if devi else s.models[0]}}
        for key in ("fparam", "aparam"):
            if getattr(s, key) is not None:
                t["model"][key] = getattr(s, key)
        system: dict = {"file": s.data_file if s.restart_file is None else _relative(s.restart_file, self.base)}
        if s.created is not None:   # create_box + create_atoms: numdp run's [system] lattice
            names = self._type_names()
            if max(s.created["types"]) > len(names):
                raise Refused(f"create_atoms: atom type {max(s.created['types'])}: the "
                              f"{'pair_coeff' if s.elements else 'model'} names {len(names)} types ({' '.join(names)})")
            elements = [names[t - 1] for t in s.created["types"]]
            system = {"lattice": {"style": s.created["style"], "a": s.created["a"], "cells": s.created["cells"],
                                  "elements": elements[:1] if len(set(elements)) == 1 else elements}}
        elif s.box_region is not None:
            raise Refused("create_box without create_atoms: numdp lmp needs atoms")
        if s.continues is not None:   # a later run: the checkpoint restores the whole state
            system = {"file": s.continues}
            if s.zero_momentum:
                system["momentum"] = "zero"
            ramps = _ramps(s)
            if ramps:
                raise Refused(f"a ramp ({ramps[0][0]} -> {ramps[0][1]}) in a run after the first: numdp anchors "
                              f"ramps at step 0 of the script; ramp in the first run only")
        elif s.restart_file is not None:
            self._matches_checkpoint()
            if s.zero_momentum:
                system["momentum"] = "zero"
        else:   # a checkpoint restores types, masses and velocities
            if s.created is None:   # LAMMPS keeps a data file's velocities as they are (numdp run zeroes
                system["momentum"] = "zero" if s.zero_momentum else "keep"   # their momentum)
            if s.elements is not None and s.created is None:
                system["type_names"] = s.elements
            if s.masses:
                system["masses"] = self._masses()
            if s.velocity is not None and s.minimize is None:
                system["velocities"] = {"temperature": lammps_kelvin(s.velocity[0]), "seed": s.velocity[1]}
            elif s.velocity is not None:
                self.note("velocity create before minimize: numdp's minimization starts at rest (LAMMPS' "
                          "minimize ignores the velocities too); not used")
            if s.boundary != ("p", "p", "p"):
                system["pbc"] = [b == "p" for b in s.boundary]
            if s.replicate != (1, 1, 1):   # LAMMPS' atom ids: the x replica fastest
                system["replicate"] = list(s.replicate)
                system["replicate_order"] = "lammps"
        t["system"] = system
        if s.minimize is not None:
            t["minimize"] = self._minimize_table(s)
        else:
            t["md"] = self._md_table(fix, s)
        t["neighbor"] = {"skin": s.skin}
        out: dict = {}
        if s.dump is None:
            out["trajectory"] = ""
            if self._triclinic_box(s):   # no dump, but a dump after read_restart of its checkpoint needs it
                out.update(format="lammps-dump", triclinic_bounds=True)   # (_checkpoint_output)
        elif s.dump.style == "xyz":
            out.update(trajectory=s.dump.file, format="extxyz", every=s.dump.every, fields=["position"])
        else:
            out.update(trajectory=s.dump.file, format="lammps-dump", every=s.dump.every,
                       columns=s.dump.columns)
            if self._triclinic_box(s):
                out["triclinic_bounds"] = True   # LAMMPS' box is triclinic, its dump has tilts (zero ones too)
        if s.dump is not None:   # LAMMPS' dumps: a run's last step only on the cadence
            out["end_frame"] = False
        origin = self.origin(s)
        if origin is not None:   # LAMMPS' corner, where numdp's box starts at 0 (BoxOrigin): dumps, thermo
            out[origin.output_key] = list(origin.fixed)
        # thermo 0 (LAMMPS' default): the first and the last step only
        out["thermo_every"] = s.thermo if s.thermo > 0 else max(s.steps, 1)
        columns = s.thermo_columns if s.minimize is None else self._minimize_columns(s)
        if columns is not None:   # LAMMPS' column titles, for LAMMPS log parsers
            out["thermo_columns"] = columns
        if s.minimize is None or columns is not None:
            out["thermo_header"] = "lammps"
        out["log"] = s.log
        if s.checkpoint is not None:
            out["checkpoint"] = s.checkpoint
        out["checkpoint_every"] = s.checkpoint_every
        t["output"] = out
        # LAMMPS has no close-contact stop: a run goes on however close two atoms come (DP-GEN's
        # exploration finds such frames by their model deviation); numdp's other stops stay
        t["safety"] = {"min_distance": 0.0}
        if devi:
            t["model_devi"] = s.devi.table()
        return t

    def _minimize_columns(self, s: _State) -> list[str] | None:
        """The thermo columns of a minimize (LAMMPS prints thermo_style's during a minimize too):
        those of the state `s`, unless one counts the atoms' velocities (ke, temp, press, ...) and
        LAMMPS' atoms have some there (a data file's, velocity create's: unknown or not zero),
        which numdp's minimization, at rest, does not have: then numdp's step pe fnorm fmax
        (None), with a note."""
        columns = s.thermo_columns
        kinetic = [c for c in columns or () if c in KINETIC_KEYWORDS]
        if not kinetic or self._at_rest(s):
            return columns
        self.note(f"thermo_style {' '.join(kinetic)} during a minimize: LAMMPS counts the velocities its atoms "
                  f"have (the data file's, velocity create's), numdp's minimization runs at rest; numdp prints "
                  f"step pe fnorm fmax instead")
        return None

    def start_velocities(self, s: _State):
        """The velocities LAMMPS' atoms have at the minimize of the state `s`, which its minimize
        leaves as they are: (N, 3) Å/ps, or 0.0 for none (a lattice, a data file without
        Velocities); None when numdp lmp does not know them (`_velocities_known`)."""
        if not _velocities_known(s):
            return None
        if s.restart_file is not None:
            v = self.restart_frame["velocities"] if self.restart_frame is not None else None
        elif s.data_file is not None and (self.base / s.data_file).is_file():   # (else numdp run says it is missing)
            from ..io.structure import read_structure

            v = read_structure(self.base / s.data_file).velocities
        else:
            v = None
        return 0.0 if v is None else v

    def _at_rest(self, s: _State) -> bool:
        """Whether LAMMPS' atoms have zero velocities at the script's minimize (`start_velocities`
        known and zero: a lattice, a data file without Velocities or with zeros, a numdp checkpoint
        of a minimization)."""
        v = self.start_velocities(s)
        return v is not None and not np.any(np.asarray(v))

    def _md_table(self, fix: Fix, s: _State) -> dict:
        """[md] of the integration fix (and thermostat fix) of the state `s`."""
        md: dict = {"timestep": s.timestep, "steps": s.steps, "ensemble": fix.ensemble.value}
        if s.velocity is not None and s.restart_file is None:
            md["seed"] = s.velocity[1]   # the barostat's noise differs from task to task, as DP-GEN's seeds
        th = s.thermostat
        if th is not None:
            if fix.ensemble not in (Ensemble.NVE, Ensemble.NPH):
                raise Refused(f"fix {th.fix_id} ({th.style.value}) beside fix {s.fix_id} {fix.ensemble.value}: "
                              f"two thermostats; numdp runs one (use fix nve or nph with it)")
            if fix.ensemble is Ensemble.NPH:
                self.note(NPH_NOTICE.format(thermostat=th.style.value))
            md["ensemble"] = (Ensemble.NPT if fix.ensemble is Ensemble.NPH else Ensemble.NVT).value
            md["seed"] = th.seed
            md["thermostat"] = {"kind": th.style.value, "temperature": lammps_kelvin(th.temperature), "tau": th.damp}
        elif fix.ensemble is Ensemble.NPH:   # numdp's nph: the cell's mass needs a temperature
            if fix.ptemp is None and s.velocity is None:
                raise Refused(f"fix {s.fix_id} nph without ptemp or velocity create: numdp needs the "
                              f"temperature of the cell's mass; add ptemp T to the fix")
            if fix.ptemp is None:
                self.note(NPH_START_NOTICE.format(temperature=s.velocity[0]))
        elif fix.ensemble is not Ensemble.NVE:
            md["thermostat"] = {"kind": "nose-hoover", "temperature": lammps_kelvin(fix.temperature), "tau": fix.tdamp,
                                "chain": fix.chain, "form": "lammps"}
        if fix.ensemble in (Ensemble.NPT, Ensemble.NPH):
            md["barostat"] = {"kind": "mtk", "pressure": lammps_bar(fix.pressure), "tau": fix.pdamp,
                              "coupling": fix.coupling, "chain": fix.pchain, "form": "lammps"}
            if md["ensemble"] == Ensemble.NPH.value:
                md["barostat"]["temperature"] = lammps_kelvin(fix.ptemp if fix.ptemp is not None else s.velocity[0])
        return md

    def _matches_checkpoint(self) -> None:
        """The boundary and mass commands with read_restart set the checkpoint's again (DP-GEN's
        script), or are refused: numdp restarts with the checkpoint's."""
        frame = self.restart_frame
        # read_frame: pbc None = periodic along all three vectors of the box
        pbc = (frame["pbc"] or (True,) * 3) if frame["box"] is not None else (False,) * 3
        if tuple(pbc) != tuple(b == "p" for b in self.s.boundary):
            raise Refused(f"boundary {' '.join(self.s.boundary)}: the checkpoint of read_restart has pbc "
                          f"{list(pbc)}; numdp restarts with its boundaries")
        if not self.s.masses or frame["masses"] is None or frame["species"] is None:
            return
        self._masses()   # the checks of the mass commands
        names = self._type_names()
        for t, (mass, line) in sorted(self._type_masses().items()):
            element = names[t - 1]
            if element in frame["type_map"]:
                held = frame["masses"][frame["species"] == frame["type_map"].index(element)]
                if len(held) and not np.allclose(held, mass, rtol=1e-12, atol=0):
                    raise _LineRefused(line, "mass", f"{element} {mass} after read_restart: the checkpoint's "
                                                     f"{element} mass is {held[0]}; numdp restarts with it")

    def _check_dump_types(self, s: _State) -> None:
        """Refuse a dump whose `type` column would not be LAMMPS' type: numdp writes the model's
        type index + 1, which is the script's LAMMPS type unless pair_coeff names the elements in
        another order than the model's type_map.  DP-GEN 0.14 writes `pair_coeff * * TYPE_MAP` and
        reads the dump's types with its own type_map (dpdata), so such a frame would be labelled with
        the wrong elements; with an `element` column the names are in the file."""
        if s.dump is None or s.elements is None or "type" not in s.dump.columns or "element" in s.dump.columns:
            return
        try:
            type_map = self._model_type_map()
        except InputError:
            return   # numdp run says what is wrong with the model
        wrong = [(k + 1, e, type_map.index(e) + 1) for k, e in enumerate(s.elements)
                 if e in type_map and type_map.index(e) != k]
        if wrong:
            raise _LineRefused(s.dump_line, "dump", (
                f"column type: numdp writes the model's type numbers (type_map {' '.join(type_map)}), and "
                f"pair_coeff * * {' '.join(s.elements)} numbers the elements otherwise ("
                + ", ".join(f"{e}: LAMMPS type {k}, numdp {m}" for k, e, m in wrong)
                + "); a reader of the types (dpdata, DP-GEN) would take the wrong elements: name them in the "
                  "model's order (DP-GEN: its type_map), or add the column element"))

    def _check_dump_elements(self, s: _State) -> None:
        """dump_modify element names the element of each LAMMPS type for the element column; numdp
        writes the script's elements of the types (pair_coeff's, else the model's type_map), so any
        other names are refused."""
        if s.dump_elements is None:
            return
        names = self._type_names()   # pair_coeff's (one per type), else the model's (the types a prefix)
        if s.dump_elements != (names if s.elements else names[:len(s.dump_elements)]):
            raise _LineRefused(s.dump_elements_line, "dump_modify", (
                f"element {' '.join(s.dump_elements)}: numdp writes the element of each type as "
                f"{'pair_coeff' if s.elements else 'the model'} names it ({' '.join(names)}); give those names"))

    def _type_names(self) -> list[str]:
        """The element of each LAMMPS type: pair_coeff's elements, else the model's type_map."""
        if self.s.elements is not None:
            return self.s.elements
        try:
            return self._model_type_map()
        except InputError as exc:
            raise Refused(f"cannot read the model's type_map to name the script's atom types: {exc}") from None

    def _model_type_map(self) -> list[str]:
        """The type_map of the script's (first) model, read once per model file; InputError when
        the file cannot be read."""
        path = self.base / self.s.models[0]
        if path not in self._type_maps:
            from ..io.model_file import read_model

            self._type_maps[path] = list(read_model(path).type_map)
        return self._type_maps[path]

    def _type_masses(self) -> dict[int, tuple[float, tuple]]:
        """LAMMPS type -> (amu, where) of the mass commands, a later one over an earlier one; an open
        range (`*`, `N*`) reaches the last type: create_box's N, else the number of types
        pair_coeff names (LAMMPS' count; without pair_coeff elements the model's type_map, which
        may name more types than the data file has: their masses are unused)."""
        out: dict[int, tuple[float, tuple]] = {}
        ntypes = None
        for lo, hi, mass, where in self.s.masses:
            if hi is None:
                if ntypes is None:
                    ntypes = self.s.box_region[1] if self.s.box_region is not None else len(self._type_names())
                hi = ntypes
            for t in range(lo, hi + 1):
                out[t] = (mass, where)
        return out

    def _masses(self) -> dict[str, float]:
        """mass TYPE VALUE -> [system] masses by element (pair_coeff's elements, else the model's type_map)."""
        names = self._type_names()
        out: dict[str, float] = {}
        lines: dict[str, int] = {}
        for t, (mass, line) in sorted(self._type_masses().items()):
            if t > len(names):
                raise _LineRefused(line, "mass", f"type {t}: the {'pair_coeff' if self.s.elements else 'model'} "
                                                 f"names {len(names)} types ({' '.join(names)})")
            element = names[t - 1]
            if element in out and out[element] != mass:
                raise _LineRefused(line, "mass", f"types {lines[element]} and {t} are both {element} with "
                                                 f"different masses; numdp sets masses per element")
            out[element], lines[element] = mass, t
        return out


class _LineRefused(Refused):
    """A refusal found after the script ran, naming the command at `where` = (file, line) (file
    None: the script itself, else the `include`d file)."""

    def __init__(self, where: tuple, command: str, message: str):
        super().__init__(message)
        (self.file, self.line), self.command = where, command


def _ramps(s: _State) -> list[list[float]]:
    """The [start, stop] temperature and pressure ramps of the state's fix and thermostat fix."""
    fix, th = s.fix, s.thermostat
    return [x for x in (fix and fix.temperature, fix and fix.pressure, th and th.temperature) if isinstance(x, list)]


def _column_index(word: str) -> bool:
    """Whether `word` is thermo_modify format's column number N (>= 1)."""
    return word.isdigit() and int(word) >= 1


def _type_range(word: str) -> tuple[int, int | None]:
    """(first, last) of LAMMPS' atom type range N, *, *N, N*, M*N (last None: the last type)."""
    lo, star, hi = word.partition("*")
    try:
        first = int(lo) if lo else 1
        last = (int(hi) if hi else None) if star else first
    except ValueError:
        raise Refused(f"expected an atom type or a range of them (N, *, *N, N*, M*N), got {word!r}") from None
    if first < 1 or (last is not None and last < first):
        raise Refused(f"atom types {word}: types are numbered from 1 (and M <= N in M*N)")
    return first, last


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _accept(*allowed):
    """A harmless command (no effect on the dynamics) whose args must be one of `allowed`
    (tuples; None: any)."""
    def check(args):
        if allowed and allowed != (None,) and tuple(args) not in allowed:
            raise Refused(f"numdp lmp accepts {' | '.join(' '.join(a) for a in allowed)} (no effect on the "
                          f"dynamics); not {' '.join(args)!r}")
    return check


def _plugin(args) -> None:
    """`plugin load FILE` (DeePMD-kit's LAMMPS plugin, libdeepmd_lmp.so): numdp's pair_style deepmd
    is built in; list / unload / clear change nothing either."""
    if not args or args[0] not in ("load", "list", "unload", "clear"):
        raise Refused("expected: plugin load FILE (DeePMD-kit's plugin; numdp's pair_style deepmd is built in)")


def _run_style(args) -> None:
    """`run_style verlet`: LAMMPS' default, the velocity Verlet numdp integrates with."""
    if tuple(args) != ("verlet",):
        raise Refused(f"run_style {' '.join(args)}: numdp integrates with velocity Verlet (run_style verlet, "
                      f"LAMMPS' default) only")


def _timer(args) -> None:
    """`timer off|loop|normal|full|sync|nosync|every N|timeout off`: what LAMMPS times and prints,
    nothing numdp computes; `timeout ELAPSED` (which ends the run early) refused."""
    if not args:
        raise Refused("expected: timer off|loop|normal|full|sync|nosync|every N|timeout off ...")
    k = 0
    while k < len(args):
        word = args[k]
        if word in ("every", "timeout") and k + 1 < len(args):
            if word == "timeout" and args[k + 1] not in ("off", "unlimited"):
                raise Refused(f"timer timeout {args[k + 1]}: numdp lmp runs every step of the run (stop it with "
                              f"Ctrl-C or SIGTERM: a checkpoint is written); timeout off is accepted")
            k += 2
        elif word in ("off", "loop", "normal", "full", "sync", "nosync"):
            k += 1
        else:
            raise Refused(f"timer {word}: expected off|loop|normal|full|sync|nosync|every N|timeout off")


def _checkpoint_output(path: Path) -> dict:
    """The [output] table of the run input the checkpoint `path` stores ({} where it stores none):
    what a script continued after read_restart keeps of its dump, as LAMMPS' restart file keeps
    its box (`triclinic_bounds`: a triclinic box; `box_center`: LAMMPS' box corner)."""
    import h5py

    from ..validate import tomllib

    try:
        with h5py.File(path, "r") as h5:
            text = h5["parameters/numdp"].attrs.get("input", "") if "parameters/numdp" in h5 else ""
        output = tomllib.loads(text.decode() if isinstance(text, bytes) else str(text)).get("output", {})
    except (OSError, KeyError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    return output if isinstance(output, dict) else {}


@dataclass(frozen=True)
class DataHeader:
    """What numdp lmp needs of a LAMMPS data file's header: lo (3,) Å, its xlo ylo zlo; lengths
    (3,) Å, xhi - xlo ...; triclinic: an `xy xz yz` line (LAMMPS' box is then triclinic, whatever
    the tilts); tilts (3,) Å, xy xz yz."""

    lo: tuple[float, float, float]
    lengths: tuple[float, float, float]
    triclinic: bool
    tilts: tuple[float, float, float] = (0.0, 0.0, 0.0)


def read_data_header(path: Path) -> DataHeader | None:
    """The `DataHeader` of the LAMMPS data file `path`; None where it cannot be read or has no
    `xlo xhi` ... lines (a general triclinic `avec` box; numdp run reads it and says what is wrong)."""
    bounds: dict[str, tuple[float, float]] = {}
    triclinic = False
    tilts = (0.0, 0.0, 0.0)
    try:
        with open(path) as fh:
            next(fh, None)   # the title line
            for line in fh:
                words = line.split("#")[0].split()
                if words[-3:] == ["xy", "xz", "yz"]:
                    triclinic = True
                    if len(words) == 6 and all(map(is_number, words[:3])):
                        tilts = tuple(float(w) for w in words[:3])
                elif len(words) == 4 and words[2] in ("xlo", "ylo", "zlo") and all(map(is_number, words[:2])):
                    bounds[words[2]] = (float(words[0]), float(words[1]))
                elif words and not is_number(words[0]):   # a section (Masses, Atoms, ...): the header is over
                    break
    except (OSError, UnicodeDecodeError):
        return None
    if len(bounds) != 3:
        return None
    lo_hi = [bounds[k] for k in ("xlo", "ylo", "zlo")]
    return DataHeader(tuple(lo for lo, _ in lo_hi), tuple(hi - lo for lo, hi in lo_hi), triclinic, tilts)


def _start_box(s: _State) -> tuple[np.ndarray, np.ndarray] | None:
    """LAMMPS' box of the state `s` as read_data (replicated: each cell vector times its replicas)
    or create_box made it: (lower corner (3,) Å, cell (3, 3) Å, rows a, b, c); None: neither (or a
    data file numdp could not read)."""
    if s.data_header is not None:
        (lx, ly, lz), (xy, xz, yz) = s.data_header.lengths, s.data_header.tilts
        cell = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]]) * np.asarray(s.replicate, float)[:, None]
        return np.asarray(s.data_header.lo, float), cell
    if s.box_region is not None:
        lo, lengths = s.box_region_box
        return lo, np.diag(lengths)
    return None


def _is_zero(word: str) -> bool:
    """Whether a LAMMPS number word is zero (0, 0.0, -0, 0e0); False for any other word."""
    try:
        return float(word) == 0.0
    except ValueError:
        return False


def _bare_fix_message(args) -> str:
    """The refusal of a fix line without a group and a style (LAMMPS refuses it too)."""
    if args[:1] == ("dpgen_plm",):
        return ("`fix dpgen_plm` is DP-GEN's template placeholder, which DP-GEN writes out only with "
                "\"model_devi_plumed\": true (a PLUMED fix, not supported by numdp lmp); LAMMPS refuses the bare "
                "line too: delete it from the template")
    return "expected: fix ID GROUP STYLE ... (LAMMPS refuses it too)"


_DUMP_MODIFY_KEYWORDS = ("sort", "append", "element", "every", "first", "flush", "format", "header", "image",
                         "label", "maxfiles", "nfile", "pad", "precision", "region", "scale", "thresh", "time",
                         "units", "unwrap", "colname", "buffer", "delay", "fileper", "skip", "types")
"""LAMMPS' dump_modify keywords: an `element` list ends at one of them."""

_MIN_STYLES = ("cg", "sd", "fire")
_MIN_NUMBERS = ("dmax", "tmax", "tmin", "dtgrow", "dtshrink", "alpha0", "alphashrink")
_MIN_INTEGERS = ("delaystep", "vdfmax")
"""min_modify keywords of min_style fire, as numdp's [minimize] keys of the same names."""

_HARMLESS = {
    "atom_modify": _accept(("map", "yes"), ("map", "array"), ("map", "hash")),
    "newton": _accept(("on",), ("off",), ("on", "on"), ("off", "off")),
    "processors": _accept(("*", "*", "*")),
    "comm_modify": _accept(("vel", "yes"), ("vel", "no")),
    "plugin": _plugin,
    "run_style": _run_style,
    "timer": _timer,
}
_COMMANDS = ("units", "boundary", "atom_style", "dimension", "neighbor", "neigh_modify", "box", "read_data",
             "replicate", "reset_timestep", "lattice", "region", "create_box", "create_atoms",
             "read_restart", "change_box", "mass", "pair_style", "pair_coeff", "velocity", "fix", "unfix",
             "timestep", "thermo", "thermo_style", "dump", "dump_modify", "restart", "log", "run", "min_style",
             "min_modify", "minimize", "write_data", "write_restart", "thermo_modify", "compute", "uncompute",
             "clear", "group", "undump")
_BETWEEN_RUNS = ("fix", "unfix", "timestep", "thermo", "thermo_style", "thermo_modify", "run", "write_data",
                 "write_restart", "reset_timestep", "undump")
"""The commands numdp lmp takes after a run (and `velocity all zero linear`): a later run is a
restart from the run before's final checkpoint with other fixes, timestep or thermo output."""


def translate(text: str, name: str, cli_variables: dict[str, str], base: Path,
              log: str | None = None, minimize_stop: int | None = None) -> Translation:
    """Run the LAMMPS script `text` (named `name` in messages; -v variables `cli_variables`; files
    relative to `base`, the current folder as for LAMMPS) into numdp run's tables.  `log`: the log
    file of the command line's -log ("" none; None: log.lammps), until a `log` command.
    `minimize_stop`: the step the minimize before the script's first run after one stopped at
    (None: not known yet, its MAXITER taken; numdp.commands.lmp translates again once it ran)."""
    tr = _Translator(name, base)
    tr.minimize_stop = minimize_stop
    if log is not None:
        tr.s.log = log

    def handler(c: Command) -> None:
        try:
            tr(c)
        except Refused as exc:
            raise script.error(c.line, c.name, str(exc)) from None

    script = Script(name, handler, cli_variables, keyword=tr.keyword, base=base)
    script.run(text)
    try:
        tables = tr.tables(tr.first)   # the state at the first run (later commands belong to later runs)
        later = [tr.tables(s) for s in tr.runs]
    except _LineRefused as exc:
        raise script.error(exc.line, exc.command, str(exc), exc.file or name) from None
    except Refused as exc:
        raise InputError(f"{name}: {exc}") from None
    for line in script.printed:
        tr.notices.append(f"print: {line}")
    epilogue = None
    if script.deferred:
        _probe(script, tr, "minimize" in (later[-1] if later else tables))
        epilogue = Epilogue(script, tr)
    return Translation(tables, tr.notices, to_toml(tables, tr.notices, name), tr.writes, tr.s.elements,
                       [(t, to_toml(t, [], name)) for t in later], epilogue, tr.md_start, tr.origin(tr.first),
                       tr.open_cell(tr.first))


def _probe(script: Script, tr: _Translator, minimized: bool) -> None:
    """Refuse now, in one line, a line kept for after the runs that numdp lmp could not run then
    (an unknown keyword, a kinetic one after a minimize whose velocities it does not know): run a
    copy of the script's kept lines with every FINAL_KEYWORDS value 1 (minimized: the last run is a
    minimize)."""
    probe = copy.copy(script)
    probe.variables = copy.deepcopy(script.variables)
    probe.printed = list(script.printed)
    tr.final = dict.fromkeys(FINAL_KEYWORDS, 1.0)
    if minimized and not _velocities_known(tr.first):
        for key in KINETIC_KEYWORDS:
            del tr.final[key]
    try:
        probe.finish(tr.keyword, probe=True)
    finally:
        tr.final = None


# -- TOML ---------------------------------------------------------------------------------------------

def to_toml(tables: dict, notices: list[str], name: str) -> str:
    """The `numdp run` input of `tables` (its own TOML: one level of tables, inline tables below),
    headed by comments with the notices."""
    lines = [f"# numdp run input equivalent to the LAMMPS script {name} (numdp lmp); relative paths are",
             "# relative to the folder numdp lmp ran in"]
    lines += [f"# note: {n}" for n in notices]
    md, velocities = tables.get("md", {}), tables.get("system", {}).get("velocities")
    if "thermostat" in md or "barostat" in md or velocities:
        lines.append(f"# constants: {CONSTANTS_COMMENT}")
    lines += toml_lines(tables)
    return "\n".join(lines) + "\n"
