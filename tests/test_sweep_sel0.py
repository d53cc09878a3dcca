"""Models whose sel has a 0: a type of type_map with no neighbour slots (DeePMD-kit's sel "auto"
for a type its training data never brings within rcut of an atom, e.g. DP-GEN's type_map
[H, C, N, O] over data without N).  DeePMD-kit trains, freezes and runs them: the type's
neighbour block is empty (an atom of that type is nobody's neighbour, and has neighbours of its
own).

Fixtures in tests/data/sel0, written by tools/make_sel0_fixtures.py with DeePMD-kit 3.2 (PyTorch
backend), gzipped (the `files` fixture unpacks them): four models, type_map [O, H, C] with sel
[16, 32, 0] (type_one_side true and false), [O, C, H] with [16, 0, 32] (false) and [C, O, H] with
[0, 16, 32] (true), and DeePMD-kit's evaluation of a periodic 192-atom water frame and an open
12-atom cluster, both with C atoms in them.

Tolerances (double): the energy is a sum over N <= 192 atoms of atomic energies of O(1) eV, each
from fitting products of <= 64 terms and a descriptor of <= 48 slots x 8 channels, so round-off
is ~(192 + 64 + 48) eps ~ 7e-14 of the largest magnitude; 1e-12 relative leaves a margin of 10.
Forces and virials sum O(100) pair terms of O(1) with cancellation (a force is ~10x smaller than
its largest terms): ~100 x 10 x eps ~ 2e-13 relative to the largest component; 1e-10 is DeePMD-kit's
float64 oracle requirement (tests/test_oracle.py), as the other DeePMD-kit fixtures use.
Compressed against uncompressed: 1e-6 eV/A and 1e-6 eV, tests/test_compress.py's.
"""
from __future__ import annotations

import io
import json
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main as cli_main
from numdp.errors import InputError
from numdp.io.model_file import read_model, write_model
from numdp.model.compress import compress
from numdp.model.dp_model import DPModel

DATA = Path(__file__).resolve().parent / "data" / "sel0"
REF = np.load(DATA / "reference.npz")
META = json.loads(str(REF["meta"]))
CASES = list(META["cases"])
CONFS = ["pbc", "open"]
E_TOL = 1e-12
F_TOL = 1e-10


def rel(a, b) -> float:
    """Largest difference relative to the largest magnitude of the reference b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def conf(name, type_map):
    coord, box, names = REF[f"{name}_coord"], REF[f"{name}_box"], REF[f"{name}_names"]
    types = np.array([type_map.index(str(n)) for n in names], np.int32)
    return coord, types, (box if box.any() else None)


def check(result, case, name, atomic=True):
    key = f"{case}_{name}"
    assert rel(result.energy, REF[f"{key}_energy"]) <= E_TOL
    assert rel(result.atom_energies, REF[f"{key}_atom_energy"]) <= E_TOL
    assert rel(result.forces, REF[f"{key}_force"]) <= F_TOL
    assert rel(np.asarray(result.virial).reshape(9), REF[f"{key}_virial"]) <= F_TOL
    if atomic:
        assert rel(result.atom_virials, REF[f"{key}_atom_virial"]) <= F_TOL


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder with the fixtures' models unpacked: CASE.dp, and CASE.pth where stored."""
    import gzip

    folder = tmp_path_factory.mktemp("sel0")
    for gz in DATA.glob("*.gz"):
        (folder / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    return folder


@pytest.fixture(scope="module")
def params(files):
    return {case: read_model(files / f"{case}.dp") for case in CASES}


def test_fixtures_have_a_zero_in_the_middle_and_at_the_end(params):
    sels = {case: list(p.descriptor.sel) for case, p in params.items()}
    assert any(s[-1] == 0 for s in sels.values()) and any(s[1] == 0 for s in sels.values())
    assert {p.descriptor.type_one_side for p in params.values()} == {True, False}


@pytest.mark.parametrize("name", CONFS)
@pytest.mark.parametrize("case", CASES)
def test_cpu_double_matches_deepmd_kit(params, case, name):
    p = params[case]
    coord, types, box = conf(name, p.type_map)
    for nthreads, chunk in ((1, None), (2, 5)):   # chunks of 5: a chunk with C atoms only, one without
        check(DPModel(p, nthreads=nthreads, chunk=chunk).evaluate(coord, types, box), case, name)


def test_pth_reads_as_its_dp_and_matches_deepmd_kit(params, files):
    from test_model_file import assert_params_equal

    for case in META["cases"]:
        path = files / f"{case}.pth"
        if path.exists():
            p = read_model(path)
            assert 0 in p.descriptor.sel
            assert p.info["model_def_script"] == params[case].info["model_def_script"]
            p.info = params[case].info   # only the provenance differs (file kind, version)
            assert_params_equal(p, params[case])
            coord, types, box = conf("pbc", p.type_map)
            check(DPModel(p, nthreads=1).evaluate(coord, types, box), case, "pbc")


@pytest.mark.parametrize("suffix", [".dp", ".h5"])
@pytest.mark.parametrize("compressed", [False, True])
def test_file_round_trips(params, tmp_path, suffix, compressed):
    from test_model_file import assert_params_equal

    for case, p in params.items():
        if compressed:
            p = compress(p, dx=0.02, order=3)[0]
        path = tmp_path / f"{case}{suffix}"
        write_model(p, path)
        back = read_model(path)
        assert list(back.descriptor.sel) == list(p.descriptor.sel)
        if compressed:   # every net's table, the empty block's too, comes back bit for bit
            assert len(back.descriptor.tables) == len(p.descriptor.tables)
            for a, b in zip(back.descriptor.tables, p.descriptor.tables):
                assert np.array_equal(a.meta(), b.meta())
                # (.dp holds DeePMD-kit's order-5 layout: an order-3 table comes back zero-padded)
                assert np.array_equal(a.coef[:, :b.coef.shape[1]], b.coef) and not a.coef[:, b.coef.shape[1]:].any()
            back.info = p.info   # (a .dp file keeps its own account of the compression)
        assert_params_equal(back, p)
        coord, types, box = conf("open", p.type_map)
        ra = DPModel(p, nthreads=1).evaluate(coord, types, box)
        rb = DPModel(back, nthreads=1).evaluate(coord, types, box)
        assert ra.energy == rb.energy and np.array_equal(ra.forces, rb.forces)


@pytest.mark.parametrize("order", [3, 5])
def test_compressed_within_1e6_of_uncompressed(params, order):
    for case, p in params.items():
        cp, report = compress(p, dx=0.01, order=order)
        assert len(report) == len(p.descriptor.embeddings)
        for name in CONFS:
            coord, types, box = conf(name, p.type_map)
            a = DPModel(p, nthreads=1).evaluate(coord, types, box)
            model = DPModel(cp, nthreads=1)
            b = model.evaluate(coord, types, box)
            assert np.abs(b.forces - a.forces).max() <= 1e-6
            assert abs(b.energy - a.energy) <= 1e-6
            assert np.abs(b.virial - a.virial).max() <= 1e-5
            assert model.beyond_table == 0


@pytest.mark.parametrize("precision,tol", [("mix32", 1e-5), ("mix16", 1e-2)])
def test_mixed_precisions_against_double(params, precision, tol):
    # tolerances of tests/test_compress.py's mix32 check (forces 1e-5 of the largest) and, for
    # float16 operands (u = 2^-11, 1000x float32's 2^-24 x 8), 1e-2
    for case, p in params.items():
        coord, types, box = conf("pbc", p.type_map)
        a = DPModel(p, nthreads=1).evaluate(coord, types, box)
        for q in (p, compress(p, dx=0.01, order=5)[0]):
            b = DPModel(q, nthreads=1, precision=precision).evaluate(coord, types, box)
            assert rel(b.forces, a.forces) <= tol
            assert abs(b.energy - a.energy) <= tol * np.abs(a.atom_energies).sum()


def test_closest_pair_skips_a_block_without_slots(params):
    """The MD safety test's nearest listed neighbour reads each block's first slot: an empty
    last block has none (its "first slot" is the next row's first: another centre's neighbour,
    at worst the atom itself, 0 A away)."""
    from numdp.kernels.cpu.md import closest_pair
    from numdp.neighbor import build_nlist, extend

    for case, name in (("end_one_side", "pbc"), ("end_two_side", "open")):
        p = params[case]
        d = p.descriptor
        coord, types, box = conf(name, p.type_map)
        ext = extend(coord, types, box, d.rcut)
        nl = build_nlist(ext, d.rcut, d.sel, d.ntypes).nlist
        dist, i, j = closest_pair(ext.positions, nl, d.sec)
        best = np.inf
        for a in range(nl.shape[0]):
            js = nl[a][nl[a] >= 0]
            if js.size:
                best = min(best, np.linalg.norm(ext.positions[js] - ext.positions[a], axis=1).min())
        assert dist == pytest.approx(best, rel=1e-15)


def test_negative_or_all_zero_sel_is_refused(params):
    import copy

    p = copy.deepcopy(params["end_one_side"])
    p.descriptor.sel = [-1, 49, 0]
    with pytest.raises(InputError, match="negative"):
        p.validate("m")
    p.descriptor.sel = [0, 0, 0]
    with pytest.raises(InputError, match="no type has neighbour slots"):
        p.validate("m")


def test_numdp_test_reproduces_deepmd_kit_labels(files, tmp_path):
    from tests_util import write_system

    case = "mid_two_side"
    tm = META["cases"][case]["type_map"]
    coord, types, box = conf("pbc", tm)
    key = f"{case}_pbc"
    sysdir = write_system(tmp_path / "sys", coord[None], box[None], types, tm,
                          energy=np.array([REF[f"{key}_energy"]]), force=REF[f"{key}_force"][None],
                          virial=REF[f"{key}_virial"][None])
    assert cli_main(["test", "-m", str(files / f"{case}.dp"), "-s", str(sysdir),
                     "--json", str(tmp_path / "t.json")]) == 0
    fig = json.loads((tmp_path / "t.json").read_text())["overall"]
    assert fig["rmse_energy"] < 1e-9 and fig["rmse_force"] < 1e-9   # meV/atom, meV/A


def test_model_devi_of_two_models_matches_deepmd_kit(files, tmp_path):
    from tests_util import write_system

    a, b = "end_one_side", "end_two_side"
    tm = META["cases"][a]["type_map"]
    assert META["cases"][b]["type_map"] == tm
    coord, types, box = conf("pbc", tm)
    sysdir = write_system(tmp_path / "sys", coord[None], box[None], types, tm)
    out = tmp_path / "md.out"
    assert cli_main(["model-devi", "-m", str(files / f"{a}.dp"), str(files / f"{b}.dp"), "-s", str(sysdir),
                     "-o", str(out)]) == 0
    row = np.loadtxt(out).ravel()
    fa, fb = REF[f"{a}_pbc_force"], REF[f"{b}_pbc_force"]
    mean = (fa + fb) / 2
    dev = np.sqrt((((fa - mean) ** 2 + (fb - mean) ** 2) / 2).sum(axis=1))
    assert row[4:7] == pytest.approx([dev.max(), dev.min(), dev.mean()], rel=1e-6)   # the file holds 7 digits (%.6e)


def test_ase_calculator_matches_deepmd_kit(params):
    ase = pytest.importorskip("ase")
    from numdp.ase import DPCalculator

    case = "first_one_side"
    coord, types, box = conf("pbc", params[case].type_map)
    atoms = ase.Atoms([str(n) for n in REF["pbc_names"]], positions=coord, cell=box, pbc=True)
    atoms.calc = DPCalculator(DPModel(params[case], nthreads=1))
    assert rel(atoms.get_potential_energy(), REF[f"{case}_pbc_energy"]) <= E_TOL
    assert rel(atoms.get_forces(), REF[f"{case}_pbc_force"]) <= F_TOL


def _md_input(folder: Path, model: Path, name: str, device: str, steps: int) -> Path:
    from numdp.io.structure import write_extxyz

    folder.mkdir(parents=True, exist_ok=True)
    box = REF[f"{name}_box"]
    write_extxyz(folder / "start.xyz", [str(n) for n in REF[f"{name}_names"]], REF[f"{name}_coord"],
                 box if box.any() else None)
    (folder / "md.toml").write_text(textwrap.dedent(f"""
        [model]
        file = "{model}"
        device = "{device}"
        [system]
        file = "start.xyz"
        velocities = {{ temperature = 300.0, seed = 1 }}
        masses = {{ O = 16.0, H = 2.0, C = 12.0 }}
        [md]
        timestep = 0.0002
        steps = {steps}
        [output]
        every = 2
        thermo_every = 2
        progress = "none"
    """))
    return folder / "md.toml"


def test_md_run_a_few_steps(files, tmp_path):
    """numdp run (CPU) on the periodic frame: the start's potential energy is DeePMD-kit's, and
    the total energy is conserved over 4 steps of 0.2 fs."""
    import h5py

    from numdp.config import load_run_settings
    from numdp.md.setup import run_md

    case = "end_two_side"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # C atoms within rcut: no slots for them
        run_md(load_run_settings(_md_input(tmp_path, files / f"{case}.dp", "pbc", "cpu", 4)), screen=io.StringIO())
    with h5py.File(tmp_path / "traj.h5md", "r") as f:
        e = f["observables/total_energy/value"][()]
        pe = f["observables/potential_energy/value"][()]
    assert pe[0] == pytest.approx(float(REF[f"{case}_pbc_energy"]), rel=E_TOL)
    assert len(e) == 3 and np.ptp(e) < 1e-3


@pytest.mark.parametrize("case", ["first_one_side", "end_two_side"])
def test_cuda_md_run_equals_cpu_run(files, tmp_path, case):
    """numdp run with the step on the device (simulated) on the open cluster: positions after 2
    steps equal the CPU run's to round-off."""
    pytest.importorskip("numba_cuda")
    import h5py

    from numdp.config import load_run_settings
    from numdp.md.setup import run_md

    out = {}
    for device in ("cpu", "cuda"):
        toml = _md_input(tmp_path / device, files / f"{case}.dp", "open", device, 2)
        settings = load_run_settings(toml)
        model = DPModel(read_model(files / f"{case}.dp"), nthreads=1, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_md(settings, model=model, screen=io.StringIO())
        with h5py.File(tmp_path / device / "traj.h5md", "r") as f:
            out[device] = (f["particles/trajectory/position/value"][()],
                           f["observables/potential_energy/value"][()])
    assert out["cpu"][1][0] == pytest.approx(float(REF[f"{case}_open_energy"]), rel=E_TOL)
    assert np.abs(out["cuda"][0] - out["cpu"][0]).max() < 1e-10
    assert out["cuda"][1] == pytest.approx(out["cpu"][1], rel=1e-12)


# -- CUDA, in Numba's simulator (tests/conftest.py): the 12-atom open cluster -------------------

@pytest.mark.parametrize("case", CASES)
def test_cuda_double_matches_deepmd_kit(params, case):
    pytest.importorskip("numba_cuda")
    p = params[case]
    coord, types, box = conf("open", p.type_map)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = DPModel(p, nthreads=1, device="cuda", chunk=5).evaluate(coord, types, box)
    check(r, case, "open")


@pytest.mark.parametrize("case", ["end_one_side", "mid_two_side", "first_one_side"])
def test_cuda_compressed_matches_cpu_compressed(params, case):
    pytest.importorskip("numba_cuda")
    cp = compress(params[case], dx=0.02, order=5)[0]
    coord, types, box = conf("open", cp.type_map)
    a = DPModel(cp, nthreads=1).evaluate(coord, types, box)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = DPModel(cp, nthreads=1, device="cuda", chunk=5).evaluate(coord, types, box)
    assert rel(b.energy, a.energy) <= E_TOL
    assert rel(b.forces, a.forces) <= 1e-12
    assert rel(b.virial, a.virial) <= 1e-12


# -- training: sel "auto" gives 0 as DeePMD-kit ----------------------------------------------

def test_sel_auto_of_a_type_absent_from_the_data_is_zero():
    from numdp.train.stats import auto_sel

    assert list(auto_sel(np.array([13, 24, 0]), 1.1)) == [16, 28, 0]


def test_training_frames_take_a_block_without_slots():
    """Every trainer path (restart, --init-model, a sel list, sel auto) builds a FrameCache of the
    model's sel, a 0 too (tests/test_train_run.py trains with one)."""
    from numdp.train.data import FrameCache

    FrameCache([], 4.0, [16, 32, 0], 3)



class _Lists:
    """A list's overflow summary as the MD force providers read it (per-type counts)."""

    def __init__(self, overflow, max_count):
        self.overflow = np.asarray(overflow, dtype=np.int64)
        self.max_count = np.asarray(max_count, dtype=np.int64)

    @property
    def overflowed(self) -> bool:
        return bool(self.overflow.any())


def test_md_overflow_of_another_type_after_a_sel0_notice_is_warned_and_counted(params):
    """A sel-0 type present in the system puts neighbours outside the list at every call (by the
    model's design); a later real overflow of a type with slots must still be warned about (the
    one warning of a run went to the sel-0 notice at step 0) and only calls with a real overflow
    count in the summary's 'force calls with neighbour overflow' (every call counted before)."""
    from numdp.md.forces import ForceProvider
    from numdp.neighbor import NeighborOverflowWarning

    model = DPModel(params["end_one_side"])            # sel [16, 32, 0], type_map O H C
    fp = ForceProvider(model, skin=1.0)
    calls = [_Lists([0, 0, 3], [10, 20, 2]),            # only C within rcut: no slots by design
             _Lists([0, 2, 3], [10, 34, 2]),            # H overflows (34 > 32) later in the run
             _Lists([0, 2, 3], [10, 35, 2]),            # the same types again: no new warning
             _Lists([1, 2, 3], [17, 35, 2])]            # O overflows too: warned
    said = []
    for nl in calls:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            fp._count_overflow(nl)
        said.append([str(x.message) for x in w if issubclass(x.category, NeighborOverflowWarning)])
    assert len(said[0]) == 1 and "sel = 0 leaves out" in said[0][0]
    # each type once: the new one alone (the sel-0 notice and H are not repeated)
    assert len(said[1]) == 1 and "'H' (type 1): 2 centre atom(s) have more than sel = 32" in said[1][0]
    assert said[2] == []
    assert len(said[3]) == 1 and "'O' (type 0): 1 centre atom(s) have more than sel = 16" in said[3][0]
    assert "'H'" not in said[3][0]
    assert fp.overflow_calls == 3
