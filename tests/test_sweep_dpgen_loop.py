"""DP-GEN 0.14's whole concurrent-learning loop (`dpgen run param.json machine.json`, iterations 0
and 1: 00.train with 4 models, 01.model_devi, 02.fp with fp_style custom (EMT), iteration 1's
training with training_reuse_iter) ran with numdp as `dp` ("train_command": "numdp") and `lmp`
("model_devi" command "numdp lmp") on a 2x2x2 fcc Cu cell.  Every stage finished and DP-GEN read
what numdp wrote; these tests keep the exploration step's contract on one of that run's tasks
(tests/data/dpgen_loop/, made by tools/make_dpgen_loop_fixtures.py):

- the model_devi.out numdp lmp writes in DP-GEN's task is the model deviation of the frames it
  dumps to traj/STEP.lammpstrj, read back as DP-GEN reads them (dpdata's lammps/dump), at the
  steps DP-GEN pairs them by (a candidate's row step names its traj file);
- on those frames numdp's deviation is DeePMD-kit 3.2's `dp model-devi` (models converted to .pth).

Both model_devi.out files are printed with 7 significant digits ("%.6e"): values equal to
round-off print equal to one unit of the 7th digit; entries that are zero in exact arithmetic
(the perfect lattice of step 0: forces and off-diagonal virials vanish by symmetry) are
round-off sums of ~50 neighbour terms of up to ~10 eV/Å (or eV), 50 * 10 * 2.2e-16 ~ 1e-13,
held to ATOL = 1e-12.
"""
import glob
import os
import shutil
from pathlib import Path

import dpdata  # a test extra (pyproject's [test]): DP-GEN's dump reader
import numpy as np

from numdp.cli import main as cli_main
from numdp.infer import DeepPot, calc_model_devi

FIX = Path(__file__).parent / "data" / "dpgen_loop"
GRAPHS = sorted(FIX.glob("graph.*.pb"))
ATOL = 1e-12
STEPS = 300          # the task's NSTEPS
TRJ_FREQ = 10        # its THERMO_FREQ = DUMP_FREQ (DP-GEN's trj_freq)
TYPE_MAP = ["Cu"]


def assert_printed_equal(a, b, what):
    """a, b: (nrows, ncols) read from %.6e columns; equal to one unit of the 7th digit (+ ATOL)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    big = np.maximum(np.abs(a), np.abs(b))
    unit = 10.0 ** (np.floor(np.log10(np.where(big > 0, big, 1.0))) - 6)
    bad = np.abs(a - b) > 1.0001 * unit + ATOL
    assert not bad.any(), (what, np.argwhere(bad)[:5], a[bad][:5], b[bad][:5])


def run_dpgen_task(tmp_path):
    """DP-GEN's 01.model_devi layout (task.000.000001/ beside ../graph.00N.pb) and its command
    `numdp lmp -i input.lammps -v restart 0`, run in the task folder."""
    work = tmp_path / "01.model_devi"
    task = work / "task.000.000001"
    task.mkdir(parents=True)
    for g in GRAPHS:
        shutil.copy(g, work / g.name)
    for f in ("input.lammps", "conf.lmp"):
        shutil.copy(FIX / "task" / f, task / f)
    cwd = os.getcwd()
    os.chdir(task)
    try:
        assert cli_main(["lmp", "-i", "input.lammps", "-v", "restart", "0"]) == 0
    finally:
        os.chdir(cwd)
    return task


def test_dpgen_task_model_devi_is_that_of_its_dumped_frames(tmp_path, capsys):
    """The rows of model_devi.out and the dumps traj/STEP.lammpstrj pair up by step (DP-GEN takes a
    candidate row's step as the dump's name), and each row is the 4 models' deviation of that
    dump's frame as dpdata reads it (positions in full precision), from calc_model_devi; the
    dumped forces are graph.000's (the model the MD runs on)."""
    task = run_dpgen_task(tmp_path)
    capsys.readouterr()
    rows = np.loadtxt(task / "model_devi.out")
    assert (task / "model_devi.out").read_text().startswith("#       step         max_devi_v")
    dumps = sorted(glob.glob(str(task / "traj" / "*.lammpstrj")),
                   key=lambda p: int(os.path.basename(p).split(".")[0]))
    steps = [int(os.path.basename(p).split(".")[0]) for p in dumps]
    assert steps == list(range(0, STEPS + 1, TRJ_FREQ)) == rows[:, 0].astype(int).tolist()
    frames = [dpdata.System(p, fmt="lammps/dump", type_map=TYPE_MAP) for p in dumps]
    coord = np.concatenate([s["coords"] for s in frames]).reshape(len(frames), -1)
    box = np.concatenate([s["cells"] for s in frames]).reshape(len(frames), 9)
    atype = frames[0]["atom_types"]
    models = [DeepPot(str(task.parent / g.name)) for g in GRAPHS]
    ours = calc_model_devi(coord, box, atype, models, frequency=TRJ_FREQ)
    assert_printed_equal(rows[:, 1:7], ours[:, 1:7], "model_devi.out vs its frames")
    # the dumps' forces: graph.000's on the dumped positions (the last frame)
    _, f0, _ = models[0].eval(coord[-1:], box[-1:], atype)
    dumped = np.loadtxt(dumps[-1], skiprows=9)
    dumped = dumped[np.argsort(dumped[:, 0])]
    assert np.abs(f0.reshape(-1, 3) - dumped[:, 5:8]).max() <= 1e-12


def test_dpgen_frames_model_devi_equals_deepmd_kit(tmp_path, capsys):
    """`numdp model-devi -m graph.00N.pb -s frames -f 10` on the frames of DP-GEN's task (as
    dpdata read them in the loop) prints DeePMD-kit 3.2's `dp model-devi` (the same models as
    .pth), and the loop's own model_devi.out (numdp lmp's), to the printed digits."""
    out = tmp_path / "model_devi.out"
    assert cli_main(["model-devi", "-m", *map(str, GRAPHS), "-s", str(FIX / "frames"), "-f", str(TRJ_FREQ),
                     "-o", str(out), "--threads", "1"]) == 0
    capsys.readouterr()
    ours = np.loadtxt(out)
    dp = np.loadtxt(FIX / "dp_model_devi.out")
    loop = np.loadtxt(FIX / "dpgen_model_devi.out")
    assert ours[:, 0].astype(int).tolist() == dp[:, 0].astype(int).tolist() == loop[:, 0].astype(int).tolist()
    assert_printed_equal(ours[:, 1:8], dp[:, 1:8], "numdp model-devi vs dp model-devi")
    assert_printed_equal(ours[:, 1:7], loop[:, 1:7], "numdp model-devi vs the loop's model_devi.out")
