"""What a user copies from the docs does what the page says: the Python examples of docs/dpdata.md
run as written (against the installed dpdata and ASE, on a small water system, with the page's
model name), and every option of the `dp` command lines that docs/from-deepmd-kit.md says numdp
takes "with the same options" (or "the same options" in its notes) is an option of that numdp
command's parser. Fast: no MD run; the dpdata examples evaluate 6 atoms."""
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)


def test_dpdata_examples_run_as_written(tmp_path, monkeypatch):
    """docs/dpdata.md's three examples, run one after the other in one namespace, in a folder holding
    the page's `POSCAR` (one water molecule and a half of the shipped start, periodic) and
    `model.dp` (the shipped water model as DeePMD-kit's .dp); the second example's `system` and
    `systems` are that POSCAR. Each must finish: the minimizer call too, which with dpdata's
    default max_steps=None raises TypeError inside ASE's optimizer."""
    dpdata = pytest.importorskip("dpdata")
    ase_io = pytest.importorskip("ase.io")
    from numdp.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["convert", str(ROOT / "inputs" / "water" / "model.h5"), "model.dp"]) == 0
    start = ase_io.read(ROOT / "inputs" / "water" / "start.xyz")
    ase_io.write("POSCAR", start[[0, 64, 65, 1, 66, 67]], format="vasp")

    blocks = python_blocks("dpdata.md")
    assert len(blocks) == 3, "docs/dpdata.md's three examples are gone"
    # the hybrid example's second driver is AmberTools' sqm (not installed here): its numdp entry,
    # written as for DeePMD-kit's driver ("dp": ...), runs beside a second numdp entry instead
    sqm = '{"type": "sqm", "qm_theory": "DFTB3"}'
    assert sqm in blocks[1]
    blocks[1] = blocks[1].replace(sqm, '{"type": "numdp", "model": "model.dp"}')
    system = dpdata.System("POSCAR", fmt="vasp/poscar")
    namespace = {"system": system, "systems": [system, system]}
    for k, block in enumerate(blocks):
        exec(compile(block, f"docs/dpdata.md example {k + 1}", "exec"), namespace)
        if k == 0:
            single = namespace["labeled"]
        if k == 1:   # a hybrid of two copies of the model: twice the energies
            assert np.allclose(namespace["labeled"]["energies"], 2 * single["energies"], rtol=1e-14, atol=0)
    # the page's promises about what came back
    assert (tmp_path / "labeled" / "type.raw").exists()
    relaxed = namespace["relaxed"]
    assert relaxed.get_nframes() == 1 and relaxed.get_natoms() == 6


def test_dp_command_lines_with_the_same_options_exist():
    """Each row of docs/from-deepmd-kit.md's command table whose numdp cell says "with the same
    options" (or "the same options"): every option of its `dp ...` line is one of numdp's."""
    from numdp.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(getattr(a, "choices", None), dict))
    options = {name: set(p._option_string_actions) for name, p in sub.choices.items()}
    text = (ROOT / "docs" / "from-deepmd-kit.md").read_text().replace("\\|", "/")
    rows = re.findall(r"^\| (`dp [^|]*)\| `numdp ([\w-]+)[^`]*`([^|]*)\|", text, re.M)
    checked, bad = 0, []
    for dp_line, command, numdp_cell in rows:
        if "same options" not in numdp_cell:
            continue
        checked += 1
        bad += [f"numdp {command} {tok}" for tok in OPTION.findall(dp_line) if tok not in options[command]]
    assert checked >= 4, "docs/from-deepmd-kit.md's 'with the same options' rows are gone"
    assert not bad, "docs/from-deepmd-kit.md promises dp's options numdp lacks: " + ", ".join(bad)
