"""Make tests/data/dpgen_loop/: one exploration task of a real `dpgen run` (DP-GEN 0.14.0,
dpdispatcher 1.1.0, dpdata 1.1.0) whose training and exploration commands are numdp, and
DeePMD-kit 3.2's `dp model-devi` on the frames that task dumped.

The loop (tests/data/dpgen_loop/param.json, machine.json; @RUN@, @FIXTURES@, @VENV_BIN@ are
filled in here): 8 frames of /work/shared/data/cu/train/fcc_300K as init data, a 2x2x2 fcc Cu
POSCAR (POSCAR.fcc222), 4 se_e2_a models trained 300 steps by `numdp train` / `numdp freeze`
(DP-GEN's train_command "numdp", TensorFlow names), nvt at 300 and 600 K for 300 steps under
`numdp lmp`, fp_style "custom" labelled by ASE's EMT (emt_label.py), iteration 1 training with
training_reuse_iter 1.  Then, from iteration 0:

  graph.00N.pb               DP-GEN's models (numdp's HDF5 under dp's name), N = 0..3
  task/input.lammps, conf.lmp  01.model_devi/task.000.000001 (600 K) as DP-GEN wrote them
  frames/                    that task's traj/*.lammpstrj read by dpdata (lammps/dump, as DP-GEN
                             reads them), as deepmd/npy
  dp_model_devi.out          `dp model-devi -m graph.00N.pth -s frames -f 10` (DeePMD-kit 3.2;
                             the graphs through `numdp convert` to .dp, `dp convert-backend` to .pth)
  dpgen_model_devi.out       the task's model_devi.out written by numdp lmp in the loop (reference)

Usage: /tmp/dpgen/bin/python tools/make_dpgen_loop_fixtures.py [RUN_DIR]
(RUN_DIR default /tmp/dpgen_loop/fixture_run, created; needs /tmp/dpgen (dpgen, dpdata) and
/tmp/dpk/bin/dp).  DP-GEN draws its seeds at random: each run gives other models.
"""
import glob
import os
import shutil
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "data", "dpgen_loop")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
DPGEN = "/tmp/dpgen/bin/dpgen"
DP = "/tmp/dpk/bin/dp"
CU = "/work/shared/data/cu/train/fcc_300K"
TASK = "task.000.000001"


def fill(name: str, run: str) -> None:
    text = open(os.path.join(FIX, name)).read()
    text = text.replace("@RUN@", run).replace("@FIXTURES@", FIX).replace("@VENV_BIN@", VENV_BIN)
    with open(os.path.join(run, name), "w") as f:
        f.write(text)


def init_data(run: str, nframes: int = 8) -> None:
    """The first `nframes` frames of the shared Cu fcc_300K system (copied, not modified)."""
    dst = os.path.join(run, "data", "cu_init")
    os.makedirs(os.path.join(dst, "set.000"))
    for f in ("type.raw", "type_map.raw"):
        shutil.copy(os.path.join(CU, f), dst)
    for f in glob.glob(os.path.join(CU, "set.000", "*.npy")):
        np.save(os.path.join(dst, "set.000", os.path.basename(f)), np.load(f)[:nframes])


def main(run: str) -> None:
    import dpdata

    os.makedirs(run)
    init_data(run)
    fill("param.json", run)
    fill("machine.json", run)
    subprocess.run([DPGEN, "run", "param.json", "machine.json"], cwd=run, check=True)
    it0 = os.path.join(run, "iter.000000")
    for g in sorted(glob.glob(os.path.join(it0, "00.train", "graph.*.pb"))):
        shutil.copy(os.path.realpath(g), os.path.join(FIX, os.path.basename(g)))
    task = os.path.join(it0, "01.model_devi", TASK)
    os.makedirs(os.path.join(FIX, "task"), exist_ok=True)
    for f in ("input.lammps", "conf.lmp"):
        shutil.copy(os.path.join(task, f), os.path.join(FIX, "task", f))
    shutil.copy(os.path.join(task, "model_devi.out"), os.path.join(FIX, "dpgen_model_devi.out"))
    dumps = sorted(glob.glob(os.path.join(task, "traj", "*.lammpstrj")),
                   key=lambda p: int(os.path.basename(p).split(".")[0]))
    frames = dpdata.System(dumps[0], fmt="lammps/dump", type_map=["Cu"])
    for p in dumps[1:]:
        frames.append(dpdata.System(p, fmt="lammps/dump", type_map=["Cu"]))
    shutil.rmtree(os.path.join(FIX, "frames"), ignore_errors=True)
    frames.to("deepmd/npy", os.path.join(FIX, "frames"))
    pths = []
    for g in sorted(glob.glob(os.path.join(FIX, "graph.*.pb"))):
        base = os.path.join(run, os.path.basename(g)[:-3])
        subprocess.run([os.path.join(VENV_BIN, "numdp"), "convert", g, base + ".dp"], check=True)
        subprocess.run([DP, "convert-backend", base + ".dp", base + ".pth"], check=True)
        pths.append(base + ".pth")
    out = os.path.join(run, "dp_model_devi.out")
    subprocess.run([DP, "model-devi", "-m", *pths, "-s", os.path.join(FIX, "frames"), "-f", "10", "-o", out],
                   check=True)
    shutil.copy(out, os.path.join(FIX, "dp_model_devi.out"))


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "/tmp/dpgen_loop/fixture_run"))
