"""Tests added by mutation round 22 (model deviation, DP-GEN's concurrent learning, and the ASE
and i-PI interfaces, second round: numdp.model.deviation, numdp.md.deviation,
numdp.io.model_devi_file, numdp.commands.model_devi, numdp.ase, numdp.ipi, numdp.commands.ipi):
each kills a plausible mistake that tests/test_model_devi.py, test_md_deviation.py, test_ase.py,
test_ipi.py, test_sweep_ipi.py, test_sweep_ase_workflows.py and rounds 4 and 7 let through (the
mutant is named in the test's docstring).  Small random models and hand-made protocol messages:
the whole file runs in a few seconds."""
from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from numdp.cli import main
from numdp.io.model_devi_file import row_line
from numdp.model.deviation import FrameDeviation, frame_deviation
from numdp.model.dp_model import DPModel
from randmodel import random_config, random_params
from tests_util import write_system

EPS = np.finfo(np.float64).eps


def _params(seed: int):
    p = random_params(ntypes=2, sel=[24, 24], neuron=(4, 8), axis_neuron=3, rcut=4.0, seed=seed)
    p.type_map = ["O", "H"]
    return p


# --------------------------------------------------------------------------------------------------
# numdp.io.model_devi_file: the row format of dp model-devi and pair_style deepmd
# --------------------------------------------------------------------------------------------------


def test_rows_print_six_digits_after_the_point_as_deepmd_kit_writes_them():
    """DeePMD-kit's write_model_devi_out (deepmd/infer/model_devi.py) writes each row with
    np.savetxt, fmt ["%12d"] + ["%19.6e"] * k and delimiter "": the step in 12 characters, then
    every value in 19 with six digits after the point (pair_style deepmd's " " + setw(18) of a
    std::scientific stream with precision 6 gives the same text for these non-negative numbers).
    Values with more digits than that, so that another precision shows.
    Mutant killed: " {v:18.8e}" for " {v:18.6e}" in row_line (eight digits still fit in 18
    characters, so the length check of tests/test_model_devi.py passes)."""
    values = [0.123456789012, 1.9876543219e-3, 45.678901234, 7.000000049, 3.1415926535e-5,
              2.7182818284, 9.87654321e-9]
    atom = np.array([1.23456789e-2, 6.54321987e-1])
    d = FrameDeviation(*values, atom_devi_f=atom)
    expected = ("%12d" + "%19.6e" * 9) % (120, *values, *atom)
    assert row_line(120, d, energy=True, atomic=True) == expected
    assert row_line(120, d, energy=False, atomic=False) == ("%12d" + "%19.6e" * 6) % (120, *values[:6])


# --------------------------------------------------------------------------------------------------
# numdp.model.deviation: a level of 0
# --------------------------------------------------------------------------------------------------


def test_relative_levels_of_zero_divide_by_the_mean_magnitude_alone():
    """--relative 0 and --relative_v 0 are levels like any other (DeePMD-kit's calc_model_devi_f
    divides by |<F>| + relative for any given value, LAMMPS' pair_style deepmd likewise; numdp's
    [model_devi] and model-devi --relative accept value >= 0): e_f,i / |<F_i>| and
    e_v,ab / |<W_ab>|.  Two models, exactly representable numbers: atom 0 F = (1, 0, 0) and
    (3, 0, 0): <F> = (2, 0, 0), e_f = 1, relative 0.5 exactly; atom 1 (4, 4, 2) and (4, 4, 6):
    <F> = (4, 4, 4), e_f = 2, relative 2 / (4 sqrt 3) (a few roundings: 4 ε).  Virials over
    N = 2 atoms, W = Xi / 2 = 1 and 3 in every component: <W> = 2, e_v = 1, relative 0.5.
    Mutant killed: `v > 0.0` for `v >= 0.0` in numdp.model.deviation._check_level (a level of 0
    refused)."""
    forces = np.array([[[1.0, 0.0, 0.0], [4.0, 4.0, 2.0]], [[3.0, 0.0, 0.0], [4.0, 4.0, 6.0]]])
    virials = np.array([np.full((3, 3), 2.0), np.full((3, 3), 6.0)])
    d = frame_deviation([0.0, 1.0], forces, virials, relative=0.0, relative_v=0.0)
    assert d.atom_devi_f[0] == 0.5
    assert abs(d.atom_devi_f[1] - 2.0 / (4.0 * np.sqrt(3.0))) <= 4 * EPS
    assert d.max_devi_v == d.min_devi_v == d.avg_devi_v == 0.5


# --------------------------------------------------------------------------------------------------
# numdp model-devi: the periodicity the file gives
# --------------------------------------------------------------------------------------------------


def test_model_devi_evaluates_slabs_of_extxyz_and_h5md_files_as_slabs(tmp_path):
    """An extxyz frame with pbc="T T F" and an H5MD trajectory with box boundary ["periodic",
    "periodic", "none"] are slabs: `numdp model-devi` evaluates them so (frames_of passes the
    file's pbc), giving the deviations of the models evaluated with pbc (T, T, F).  The file's
    %.6e values are within half a unit of the seventh digit (5e-7 relative) of the computed
    ones, which differ from these references (the same models, evaluated one by one instead of
    on a shared environment matrix) by round-off, ~1e-13 relative: rtol 1e-6.  The fully
    periodic evaluation differs by far more (the 10 atoms of a 5.5 Å box see their images
    across z within rcut 4 Å).
    Mutants killed: the pbc of extxyz frames, and that of H5MD frames, dropped in
    numdp.commands.model_devi.frames_of (`None` for `st.pbc`: evaluated as fully periodic)."""
    from numdp.io.h5md import H5MDWriter
    from numdp.io.model_file import write_model
    from numdp.io.structure import write_extxyz

    paths, models = [], []
    for seed in (1, 2, 3):
        paths.append(str(tmp_path / f"m{seed}.h5"))
        write_model(_params(seed), paths[-1])
        models.append(DPModel(_params(seed), nthreads=1))
    pos, types, box = random_config(10, 2, box_len=5.5, tilt=0.2, seed=11)
    slab = (True, True, False)
    xyz, h5 = tmp_path / "slab.xyz", tmp_path / "slab.h5"
    write_extxyz(xyz, [["O", "H"][t] for t in types], pos, box, pbc=slab)
    w = H5MDWriter(h5, types, np.ones(len(types)), ["O", "H"], fields=("position",), periodic=slab)
    w.append(0, 0.0, pos, None, None, box, {})
    w.close()

    def reference(pbc):
        outs = [m.evaluate(pos, types, box, pbc=pbc, atom_virial=False) for m in models]
        d = frame_deviation([o.energy for o in outs], [o.forces for o in outs], [o.virial for o in outs])
        return np.array([d.max_devi_v, d.min_devi_v, d.avg_devi_v, d.max_devi_f, d.min_devi_f,
                         d.avg_devi_f, d.devi_e])

    want, periodic = reference(slab), reference(None)
    assert np.abs(want / periodic - 1.0).max() > 1e-3   # the test has teeth
    for source in (xyz, h5):
        out = tmp_path / f"{source.suffix[1:]}.out"
        assert main(["model-devi", "-m", *paths, "-s", str(source), "-o", str(out), "--threads", "1"]) == 0
        row = np.loadtxt(out, ndmin=2)[0]
        assert np.allclose(row[1:], want, rtol=1e-6, atol=0), (source, row[1:] / want - 1.0)


# --------------------------------------------------------------------------------------------------
# numdp model-devi -f: a positive frequency
# --------------------------------------------------------------------------------------------------


def test_model_devi_refuses_a_frequency_of_zero(tmp_path, capsys):
    """`-f 0` would number every frame step 0 (step = frame index x FREQ): the command refuses it
    in one line naming -f, exit status 2, no output file, like -f -1.
    Mutant killed: `args.frequency < 0` for `< 1` in numdp.commands.model_devi.main."""
    from numdp.io.model_file import write_model

    models = []
    for seed in (1, 2):
        models.append(str(tmp_path / f"m{seed}.h5"))
        write_model(_params(seed), models[-1])
    pos, types, box = random_config(6, 2, box_len=5.5, tilt=0.2, seed=10)
    sys_dir = write_system(tmp_path / "sys", pos[None], box[None], types, ["O", "H"])
    for freq in ("0", "-1"):
        out = tmp_path / "devi.out"
        assert main(["model-devi", "-m", *models, "-s", str(sys_dir), "-f", freq, "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "-f" in err and "positive" in err and len(err.splitlines()) == 1, err
        assert not out.exists()


# --------------------------------------------------------------------------------------------------
# numdp.ase: stress of a left-handed cell
# --------------------------------------------------------------------------------------------------


def test_ase_stress_of_a_left_handed_cell_is_that_of_the_same_lattice_right_handed():
    """ASE's stress is (1/V) dE/dε with V = |det(cell)| > 0: a cell given with two vectors swapped
    (det < 0) is the same lattice, the same periodic system, so the same energy, forces and
    stress.  The two evaluations differ only in the order of the lattice images (sums of the
    same ~N sel terms in another order, a relative round-off of ~1e-13 for these O(1)-conditioned
    sums): 1e-9 of the largest component is far above that and far below the sign flip
    (2 |stress|).
    Mutant killed: `volume = det(cell)` for `abs(det(cell))` in DPCalculator.calculate (the
    stress of a left-handed cell with the wrong sign)."""
    from ase import Atoms

    from numdp.ase import DPCalculator

    model = DPModel(_params(5), nthreads=1)
    pos, types, box = random_config(12, 2, box_len=6.0, tilt=0.2, seed=6)
    symbols = [model.type_map[t] for t in types]
    right = Atoms(symbols=symbols, positions=pos, cell=box, pbc=True)
    left = Atoms(symbols=symbols, positions=pos, cell=box[[1, 0, 2]], pbc=True)
    assert np.linalg.det(right.cell.array) > 0 > np.linalg.det(left.cell.array)
    right.calc, left.calc = DPCalculator(model), DPCalculator(model)
    s_right, s_left = right.get_stress(), left.get_stress()
    assert np.abs(s_right).max() > 1e-4   # the test has teeth: a stress to flip
    assert np.allclose(s_left, s_right, rtol=0, atol=1e-9 * np.abs(s_right).max())
    e_right = right.get_potential_energy()
    assert abs(left.get_potential_energy() - e_right) <= 1e-9 * abs(e_right)


# --------------------------------------------------------------------------------------------------
# numdp.ipi: the answer to GETFORCE in i-PI's own conventions
# --------------------------------------------------------------------------------------------------


def _hdr(word: str) -> bytes:
    return word.upper().ljust(12).encode()


def test_ipi_answer_is_what_ipis_own_drivers_send_for_an_asymmetric_virial():
    """i-PI's Python drivers (ipi/pes/_ase.py, pet.py, rascal.py) send a virial computed with
    cell vectors as rows (ASE's, numdp's) as unit_to_internal("energy", "electronvolt", vir.T):
    transposed into i-PI's convention (cell vectors as columns), in Hartree.  serve() answers
    GETFORCE the same way: energy, forces and virial converted with i-PI's own constants
    (ipi.utils.units.unit_to_internal), the virial transposed.  An evaluate with an asymmetric
    virial tells the transposition apart (a DP model's virial is symmetric up to round-off, so
    the run of tests/test_ipi.py cannot).
    numdp's factors are i-PI's constants (numdp.units.IPI_*), each value one or two roundings
    from i-PI's product: 4 ε relative.
    Mutant killed: the virial sent untransposed (`np.asarray(virial).T` without `.T` in
    numdp.ipi._serve)."""
    ipi_units = pytest.importorskip("ipi.utils.units")
    from numdp.ipi import Session, serve

    n = 3
    energy = -12.345678
    forces = np.arange(1.0, 1.0 + 3 * n).reshape(n, 3) * 0.37
    virial = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 10.0]])
    h = np.array([[20.0, 1.0, -2.0], [0.0, 21.0, 0.5], [0.0, 0.0, 19.0]])  # Bohr, columns = vectors
    pos = np.random.default_rng(3).uniform(0.0, 10.0, (n, 3))
    script = (_hdr("INIT") + struct.pack("=ii", 0, 0) + _hdr("POSDATA") + h.tobytes()
              + np.linalg.inv(h).tobytes() + struct.pack("=i", n) + pos.tobytes() + _hdr("GETFORCE")
              + _hdr("EXIT"))
    server, client = socket.socketpair()
    try:
        server.sendall(script)
        session = serve(client, lambda p, b: (energy, forces, virial), n)
        client.close()
        reply = b""
        while chunk := server.recv(1 << 16):
            reply += chunk
    finally:
        server.close()
    assert isinstance(session, Session) and session.exited and session.evaluations == 1
    assert reply[:12] == _hdr("FORCEREADY")
    e, count = struct.unpack("=di", reply[12:24])
    got_f = np.frombuffer(reply[24:24 + 24 * n]).reshape(n, 3)
    got_v = np.frombuffer(reply[24 + 24 * n:24 + 24 * n + 72]).reshape(3, 3)
    assert count == n and struct.unpack("=i", reply[-4:]) == (0,) and len(reply) == 24 + 24 * n + 76
    to_ipi = ipi_units.unit_to_internal
    assert abs(e - to_ipi("energy", "electronvolt", energy)) <= 4 * EPS * abs(e)
    # forces: eV/Å as i-PI's energy unit over its length unit, the factor that keeps F = -dE/dx
    # in i-PI's atomic units (i-PI's own "ev/ang" force unit, 0.019446904, is that ratio rounded
    # to 8 digits: 1.1e-7 relative off it)
    ev_per_ang = to_ipi("energy", "electronvolt", 1.0) / to_ipi("length", "angstrom", 1.0)
    assert np.allclose(got_f, forces * ev_per_ang, rtol=4 * EPS, atol=0)
    assert np.allclose(got_v, to_ipi("energy", "electronvolt", virial.T), rtol=4 * EPS, atol=0)


# --------------------------------------------------------------------------------------------------
# numdp run [model_devi] relative / relative_v
# --------------------------------------------------------------------------------------------------


def test_run_rows_with_relative_levels_equal_the_relative_deviations_of_the_frames(tmp_path):
    """[model_devi] relative = 0.5 and relative_v = 0.2 (LAMMPS' pair_style deepmd `relative`,
    `relative_v`) reach the rows of `numdp run`: each row equals frame_deviation(..., 0.5, 0.2)
    of the models evaluated on the trajectory frame of its step.  test_md_deviation's set-up and
    bounds: each force off by at most eps_f = C_ROUND u64 max|F| and the virial per atom by NNEI
    rcut eps_f (sums in another order); a relative level divides by |<x>| + L >= L, whose
    numerator and denominator are each off by that much: eps / L (1 + value) for the value
    e / (|<x>| + L); plus the printed 7 digits (PRINT relative).
    Mutants killed: numdp.md.deviation.DeviationReporter.deviation passing no `relative`, or no
    `relative_v`, and numdp.md.setup passing the two levels swapped."""
    from numdp.io.model_file import read_model
    from test_md_deviation import DEVI, NNEI, PRINT, RCUT, ensemble_dir, read_devi
    from test_mpi import C_ROUND, U64, frames, numdp_run

    lf, lv = 0.5, 0.2
    path = ensemble_dir(tmp_path, extra=DEVI + f"relative = {lf}\nrelative_v = {lv}\n", steps=5)
    numdp_run(path, 1)
    _, rows = read_devi(path)
    traj = frames(path)
    assert np.array_equal(rows[:, 0], traj["step"]) and len(rows) == 2
    models = [DPModel(read_model(path / name), nthreads=1) for name in ("model.h5", "m1.h5", "m2.h5")]
    types = np.tile([0, 0, 0, 0, 1, 1, 1, 1], 8)
    evaluated = [[m.evaluate(pos, types, box, atom_virial=False) for m in models]
                 for pos, box in zip(traj["position"], traj["box"])]
    eps_f = C_ROUND * U64 * max(np.abs(o.forces).max() for outs in evaluated for o in outs)

    def columns(outs, relative, relative_v):
        d = frame_deviation([o.energy for o in outs], [o.forces for o in outs], [o.virial for o in outs],
                            relative, relative_v)
        return np.array([d.max_devi_v, d.min_devi_v, d.avg_devi_v, d.max_devi_f, d.min_devi_f, d.avg_devi_f,
                         *d.atom_devi_f])

    eps = np.r_[[NNEI * RCUT * eps_f / lv] * 3, [eps_f / lf] * (3 + len(types))]
    for row, outs in zip(rows, evaluated):
        ref = columns(outs, lf, lv)
        bound = PRINT * np.abs(ref) + eps * (1.0 + np.abs(ref))
        assert np.all(np.abs(row[1:] - ref) <= bound), np.abs(row[1:] - ref).max()
    # the test has teeth: at step 5 (step 0 is the perfect crystal, whose forces and their
    # deviations vanish) without either level, or with the two swapped, max_devi_v or max_devi_f
    # moves far outside the bounds
    for other in (columns(outs, None, lv), columns(outs, lf, None), columns(outs, lv, lf)):
        moved = np.abs(other - ref) > 10 * bound
        assert moved[0] or moved[3]


# --------------------------------------------------------------------------------------------------
# numdp.md.deviation: a restart whose deviation file is gone
# --------------------------------------------------------------------------------------------------


def test_restart_without_a_deviation_file_starts_one_and_with_one_keeps_the_rows_to_the_checkpoint(tmp_path):
    """DeviationReporter on a restart (resume_after = the checkpoint's step): an existing file
    keeps its header and rows up to that step (rows past it dropped); a file that is not there
    (deleted, or a restart into another directory) is started afresh with the header, as a new
    run's, instead of failing on the missing file.
    Mutant killed: `if resume_after is not None:` for `... and self.path.is_file()` in
    DeviationReporter.__init__ (FileNotFoundError, a traceback, on the missing file)."""
    from numdp.io.model_devi_file import header_line
    from numdp.md.deviation import DeviationReporter

    header = header_line(energy=False, atomic=False) + "\n"
    fresh = tmp_path / "gone" / "model_devi.out"
    DeviationReporter(object(), [], 5, fresh, resume_after=10).close()
    assert fresh.read_text() == header
    kept = tmp_path / "model_devi.out"
    rows = ["%12d%19.6e\n" % (step, 0.5) for step in (0, 5, 10, 15)]
    kept.write_text(header + "".join(rows))
    DeviationReporter(object(), [], 5, kept, resume_after=10).close()
    assert kept.read_text() == header + "".join(rows[:3])


# --------------------------------------------------------------------------------------------------
# numdp.ipi: the atom count of POSDATA against the types given
# --------------------------------------------------------------------------------------------------


def test_ipi_posdata_with_another_atom_count_than_the_types_is_a_one_line_error():
    """`numdp ipi --init FILE` fixes the atom count (serve's natoms): a POSDATA with another count
    is an InputError naming both counts, before anything is evaluated (evaluated with the wrong
    types, a model would either fail with its own message or give numbers for the wrong atoms).
    Mutant killed: the `n != natoms` check dropped from numdp.ipi._serve."""
    from numdp.errors import InputError
    from numdp.ipi import serve

    h = np.diag([20.0, 21.0, 22.0])
    pos = np.random.default_rng(4).uniform(0.0, 10.0, (7, 3))
    script = (_hdr("INIT") + struct.pack("=ii", 0, 0) + _hdr("POSDATA") + h.tobytes()
              + np.linalg.inv(h).tobytes() + struct.pack("=i", 7) + pos.tobytes() + _hdr("GETFORCE"))
    seen = []
    server, client = socket.socketpair()
    try:
        server.sendall(script)
        server.shutdown(socket.SHUT_WR)
        with pytest.raises(InputError, match=r"i-PI sent 7 atoms, but the atom types given are for 6") as exc:
            serve(client, lambda p, b: seen.append(p) or (0.0, np.zeros_like(p), np.zeros((3, 3))), 6)
    finally:
        client.close()
        server.close()
    assert "\n" not in str(exc.value) and not seen
