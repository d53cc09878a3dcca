"""Write tests/data/deepmd_kit_inputs/: DeePMD-kit's se_e2_a example inputs as published, and the
normalized form DeePMD-kit's `dp train` writes to out.json (every default filled in, by its own
`deepmd.utils.argcheck.normalize`), for tests/test_train_json.py to check that numdp reads both
and that they give the same training (numdp's defaults are DeePMD-kit's).  The test suite imports
no DeePMD-kit.

Needs DeePMD-kit's Python sources (a source tree is enough: `deepmd.utils.argcheck` imports only
dargs, numpy, pyyaml and h5py; a tree without a build needs an empty deepmd/lib/__init__.py and a
deepmd/lib/run_config.ini holding "[CONFIG]"):

    PYTHONPATH=DEEPMD_SRC python tools/make_json_fixtures.py DEEPMD_SRC [--version V] [--out DIR]

Files: NAME.json (the example, unchanged) and NAME.out.json (normalized), for each NAME of
`EXAMPLES`; the files of `FILES` unchanged (the LAMMPS script of the fparam example and its data
file, for tests/test_fparam.py); versions.json records DeePMD-kit's version (`git describe` of
the tree when it is a git checkout, else --version) and the example paths.
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

EXAMPLES = {
    "water_se_e2_a_tf": "examples/water/se_e2_a/input.json",
    "water_se_e2_a_pt": "examples/water/se_e2_a/input_torch.json",
    "water_se_e2_a_epochs": "examples/water/se_e2_a/input_torch_num_epoch.json",
    "fparam": "examples/fparam/train/input.json",
    "aparam": "examples/fparam/train/input_aparam.json",
    "lmdb": "examples/lmdb_downsample_data/input_lmdb.json",
}
FILES = {
    "fparam_in.lammps": "examples/fparam/lmp/in.lammps",
    "fparam_conf.lmp": "examples/fparam/lmp/conf.lmp",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="DeePMD-kit's source tree (its examples/ and deepmd/)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/deepmd_kit_inputs")
    ap.add_argument("--version", default=None, help="DeePMD-kit's version, when SRC is not a git checkout")
    args = ap.parse_args()
    from deepmd.utils.argcheck import normalize
    from deepmd.utils.compat import update_deepmd_input

    args.out.mkdir(parents=True, exist_ok=True)
    for name, rel in EXAMPLES.items():
        text = (args.src / rel).read_text()
        (args.out / f"{name}.json").write_text(text)
        full = normalize(update_deepmd_input(json.loads(text), warning=False))
        (args.out / f"{name}.out.json").write_text(json.dumps(full, indent=2) + "\n")
    for name, rel in FILES.items():
        (args.out / name).write_text((args.src / rel).read_text())
    version = args.version
    try:
        version = version or subprocess.run(["git", "-C", str(args.src), "describe", "--tags"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        version = "unknown"
    (args.out / "versions.json").write_text(json.dumps({"deepmd-kit": version, "examples": {**EXAMPLES, **FILES}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
