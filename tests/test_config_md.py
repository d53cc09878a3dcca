"""`numdp run` input validation: every bad key or value gives a one-line error naming it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from numdp.config import load_run_settings
from numdp.errors import InputError

GOOD = """
[model]
file = "model.h5"
[system]
file = "start.xyz"
velocities = { temperature = 330.0, seed = 1 }
masses = { H = 2.0 }
[md]
timestep = 0.0005
steps = 100
ensemble = "nvt"
thermostat = { kind = "nose-hoover", temperature = 330.0, tau = 0.1 }
[neighbor]
skin = 2.0
[output]
trajectory = "traj.h5md"
every = 10
fields = ["position", "force"]
thermo_every = 10
checkpoint = "ck.h5"
checkpoint_every = 50
"""


def write(tmp_path, text, name="md.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error_of(tmp_path, text) -> str:
    with pytest.raises(InputError) as exc:
        load_run_settings(write(tmp_path, text))
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_good_input_is_typed_with_defaults(tmp_path):
    s = load_run_settings(write(tmp_path, GOOD))
    assert s.model.file == tmp_path.resolve() / "model.h5"
    assert s.model.precision == "double"
    assert s.system.replicate == (1, 1, 1)
    assert s.system.velocities.temperature == 330.0 and s.system.masses == {"H": 2.0}
    assert s.md.thermostat.kind == "nose-hoover" and s.md.thermostat.chain == 3
    assert s.md.barostat is None and s.md.seed == 1
    assert s.output.fields == ("position", "force")
    assert s.output.log == tmp_path.resolve() / "log.txt"
    assert s.safety.min_distance == 0.5


def test_start_structure_may_be_an_output(tmp_path):
    """Continuing from the last checkpoint or trajectory frame is allowed: the start is read before
    the new run backs the old file up."""
    for name in ("ck.h5", "traj.h5md"):
        s = load_run_settings(write(tmp_path, GOOD.replace('file = "start.xyz"', f'file = "{name}"')))
        assert s.system.file.name == name


def test_relative_paths_follow_the_input_file(tmp_path):
    sub = tmp_path / "run"
    sub.mkdir()
    s = load_run_settings(write(sub, GOOD))
    assert s.system.file == sub.resolve() / "start.xyz"
    assert s.output.checkpoint == sub.resolve() / "ck.h5"


@pytest.mark.parametrize("old,new,expected", [
    ("tau = 0.1 }", "tau = -0.1 }", "md.toml: [md] thermostat.tau: must be > 0"),
    ("tau = 0.1 }", "tau = 0.1, chain = 0 }", "md.toml: [md] thermostat.chain: must be > 0"),
    ('kind = "nose-hoover"', 'kind = "berendsen"', "[md] thermostat.kind: must be one of"),
    ("steps = 100", "steps = 10.5", "[md] steps: expected an integer"),
    ("steps = 100", "steps = -1", "[md] steps: must be >= 0"),
    ("timestep = 0.0005", "timestep = 0", "[md] timestep: must be > 0"),
    ("timestep = 0.0005", 'timestep = "fast"', "[md] timestep: expected a number"),
    ('ensemble = "nvt"', 'ensemble = "npe"', "[md] ensemble: must be one of 'nve', 'nvt', 'npt', 'nph', got 'npe'"),
    ("skin = 2.0", "skin = 2.0\ncutoff = 3", "[neighbor] cutoff: unknown key"),
    ('file = "model.h5"', 'file = "model.h5"\nprecision = "quad"', "[model] precision: must be one of double, mix32, mix16"),
    ("seed = 1 }", "seed = 1, temp = 3 }", "[system] velocities.temp: unknown key"),
    ("masses = { H = 2.0 }", "masses = { H = -2.0 }", "[system] masses.H: must be > 0"),
    ("masses = { H = 2.0 }", "replicate = [2, 2]", "[system] replicate: expected three integers"),
    ('fields = ["position", "force"]', 'fields = ["position", "charge"]', "[output] fields: expected a list"),
    ("every = 10", "every = 0", "[output] every: must be > 0"),
    ("checkpoint_every = 50", "checkpoint_every = 50\nforce_unit = \"N\"", "[output] force_unit: must be one of"),
    ("[neighbor]", "[thermo]\nx = 1\n[neighbor]", "md.toml: [thermo]: unknown table"),
    # two outputs on one file wrote over each other (an H5MD trajectory into the log); an output on
    # an input was renamed away as a backup
    ('trajectory = "traj.h5md"', 'trajectory = "log.txt"\nformat = "h5md"',
     "md.toml: [output] log: names the same file as [output] trajectory"),
    # an unknown suffix was written as H5MD under that name (traj.pdb)
    ('trajectory = "traj.h5md"', 'trajectory = "traj.pdb"',
     "md.toml: [output] trajectory: cannot tell the format from the name 'traj.pdb': use a suffix"),
    ('checkpoint = "ck.h5"', 'checkpoint = "traj.h5md"',
     "md.toml: [output] checkpoint: names the same file as [output] trajectory"),
    ('checkpoint = "ck.h5"', 'checkpoint = "model.h5"',
     "md.toml: [output] checkpoint: names the same file as an input, [model] file"),
    ("every = 10", 'every = 10\nlog = "md.toml"', "md.toml: [output] log: names the same file as an input, the input file"),
    # the log on the start structure backed it up and wrote over it: the next run could not start
    ("every = 10", 'every = 10\nlog = "start.xyz"',
     "md.toml: [output] log: names the same file as an input, [system] file"),
    ("every = 10", "every = 10\nbox_corner = [1.0, 2.0]", "[output] box_corner: three numbers"),
    ("every = 10", "every = 10\nbox_corner = [1.0, 2.0, 3.0]\nbox_center = [1.0, 2.0, 3.0]",
     "[output] box_corner: give box_center (a box LAMMPS changes about its centre) or box_corner"),
])
def test_bad_values_name_the_key(tmp_path, old, new, expected):
    assert old in GOOD
    assert expected in error_of(tmp_path, GOOD.replace(old, new, 1))


def test_ensemble_consistency(tmp_path):
    nve = GOOD.replace('ensemble = "nvt"', 'ensemble = "nve"')
    assert "[md] thermostat: not used with ensemble = 'nve'" in error_of(tmp_path, nve)
    no_thermo = GOOD.replace('thermostat = { kind = "nose-hoover", temperature = 330.0, tau = 0.1 }', "")
    assert "[md] thermostat: required for ensemble = 'nvt'" in error_of(tmp_path, no_thermo)
    npt = GOOD.replace('ensemble = "nvt"', 'ensemble = "npt"')
    assert "[md] barostat: required for ensemble = 'npt'" in error_of(tmp_path, npt)
    with_baro = npt.replace("tau = 0.1 }", "tau = 0.1 }\nbarostat = { kind = \"berendsen\", pressure = 1.0, tau = 1.0 }")
    assert ("[md] barostat.kind: 'berendsen' is not available; numdp implements 'c-rescale' (stochastic cell "
            "rescaling) and 'mtk'") in error_of(tmp_path, with_baro)
    mtk = npt.replace("tau = 0.1 }", "tau = 0.1 }\nbarostat = { kind = \"mtk\", pressure = 1.0, tau = 1.0, chain = 4 }")
    b = load_run_settings(write(tmp_path, mtk)).md.barostat
    assert (b.kind, b.chain, b.coupling, b.tau) == ("mtk", 4, "isotropic", 1.0)
    assert "[md] barostat.compressibility: only for kind = 'c-rescale' (this is 'mtk')" in \
        error_of(tmp_path, mtk.replace("chain = 4", "compressibility = 1e-4"))
    assert "[md] barostat.chain: only for kind = 'mtk' (this is 'c-rescale')" in \
        error_of(tmp_path, mtk.replace('kind = \"mtk\", ', ""))
    assert load_run_settings(write(tmp_path, mtk.replace("chain = 4", "chain = 0"))).md.barostat.chain == 0
    assert "[md] barostat.chain: must be >= 0" in error_of(tmp_path, mtk.replace("chain = 4", "chain = -1"))
    assert "[md] barostat.temperature: only for ensemble = 'nph'" in \
        error_of(tmp_path, mtk.replace("chain = 4", "temperature = 300.0"))
    bad_coupling = npt.replace("tau = 0.1 }", "tau = 0.1 }\nbarostat = { pressure = 1.0, tau = 1.0, coupling = \"xy\" }")
    assert "[md] barostat.coupling: must be one of" in error_of(tmp_path, bad_coupling)
    # nph: the MTK barostat alone, its reference temperature required
    nph = mtk.replace('ensemble = "npt"', 'ensemble = "nph"').replace(
        'thermostat = { kind = "nose-hoover", temperature = 330.0, tau = 0.1 }', "")
    assert "[md] barostat.temperature: required" in error_of(tmp_path, nph)
    nph = nph.replace("chain = 4", "chain = 0, temperature = 250.0")
    md = load_run_settings(write(tmp_path, nph)).md
    assert md.ensemble == "nph" and md.thermostat is None
    assert (md.barostat.kind, md.barostat.chain, md.barostat.temperature) == ("mtk", 0, 250.0)
    assert "[md] barostat.temperature: must be > 0" in error_of(tmp_path, nph.replace("250.0", "0.0"))
    assert "[md] barostat.kind: ensemble = 'nph' needs kind = 'mtk'" in \
        error_of(tmp_path, nph.replace('kind = "mtk", ', "").replace("chain = 0, ", ""))
    assert "[md] thermostat: not used with ensemble = 'nph' (remove it or use 'npt')" in \
        error_of(tmp_path, mtk.replace('ensemble = "npt"', 'ensemble = "nph"'))
    assert "[md] barostat: required for ensemble = 'nph'" in error_of(
        tmp_path, GOOD.replace('ensemble = "nvt"', 'ensemble = "nph"').replace(
            'thermostat = { kind = "nose-hoover", temperature = 330.0, tau = 0.1 }', ""))
    langevin_chain = GOOD.replace('kind = "nose-hoover", temperature = 330.0, tau = 0.1',
                                  'kind = "langevin", temperature = 330.0, tau = 0.1, chain = 3')
    assert "[md] thermostat.chain: only for kind = 'nose-hoover'" in error_of(tmp_path, langevin_chain)


def test_temperature_and_pressure_ramps(tmp_path):
    """A number is a constant target; [start, stop] a ramp over steps 0 -> [md] steps
    (numdp.md.ramp); bad ramps get one line naming the key."""
    npt = GOOD.replace('ensemble = "nvt"', 'ensemble = "npt"').replace(
        "tau = 0.1 }", "tau = 0.1 }\nbarostat = { pressure = [1.0, 1e4], tau = 1.0 }")
    s = load_run_settings(write(tmp_path, npt.replace("temperature = 330.0, tau", "temperature = [300, 1000], tau")))
    assert s.md.thermostat.temperature == (300.0, 1000.0) and s.md.barostat.pressure == (1.0, 1e4)
    assert s.system.velocities.temperature == 330.0       # the start velocities are not ramped
    nh = "temperature = 330.0, tau"
    for ramp, kind, expected in (
            ("[300.0, 0.0]", "nose-hoover", "md.toml: [md] thermostat.temperature: must be > 0 at both ends of the "
                                            "ramp, got [300.0, 0.0]"),
            ("[0, 300]", "csvr", "must be > 0 at both ends of the ramp, got [0, 300]"),
            ("[0, 0]", "langevin", "must be >= 0 at both ends of the ramp and > 0 at one, got [0, 0]"),
            ("[-1, 300]", "langevin", "must be >= 0 at both ends of the ramp and > 0 at one"),
            ("[300]", "csvr", "thermostat.temperature: expected a number or a list [start, stop] of two numbers, "
                              "got [300]"),
            ("[300, 400, 500]", "csvr", "expected a number or a list [start, stop] of two numbers"),
            ('[300, "hot"]', "csvr", "expected a number or a list [start, stop] of two numbers"),
            ('"300"', "csvr", "expected a number or a list [start, stop] of two numbers, got '300'"),
            ("[300, nan]", "csvr", "thermostat.temperature: must be finite"),
            ("0.0", "langevin", "thermostat.temperature: must be > 0, got 0.0")):   # a number as before
        text = GOOD.replace(nh, f"temperature = {ramp}, tau").replace("nose-hoover", kind)
        assert expected in error_of(tmp_path, text), (ramp, kind)
    quench = GOOD.replace(nh, "temperature = [300, 0], tau").replace("nose-hoover", "langevin")
    assert load_run_settings(write(tmp_path, quench)).md.thermostat.temperature == (300.0, 0.0)
    assert "[md] barostat.pressure: expected a number or a list [start, stop] of two numbers, got [1.0]" in \
        error_of(tmp_path, npt.replace("[1.0, 1e4]", "[1.0]"))
    assert load_run_settings(write(tmp_path, npt.replace("[1.0, 1e4]", "[-500, 1e4]"))).md.barostat.pressure == \
        (-500.0, 1e4)


def test_missing_and_malformed(tmp_path):
    assert "[md]: required table missing" in error_of(tmp_path, GOOD.split("[md]")[0])
    assert "[model] file: required" in error_of(tmp_path, GOOD.replace('file = "model.h5"', ""))
    assert "not valid TOML" in error_of(tmp_path, GOOD + "\n[md\n")
    with pytest.raises(InputError, match="input file not found"):
        load_run_settings(tmp_path / "nothing.toml")


def test_cli_prints_one_line_and_exits_2(tmp_path):
    p = write(tmp_path, GOOD.replace("tau = 0.1 }", "tau = 0 }"))
    r = subprocess.run([sys.executable, "-m", "numdp.cli", "run", str(p)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "[md] thermostat.tau: must be > 0" in lines[0]


def test_parallel_grid_is_three_positive_integers(tmp_path):
    assert load_run_settings(write(tmp_path, GOOD)).parallel.grid is None
    assert load_run_settings(write(tmp_path, GOOD + "[parallel]\ngrid = [2, 1, 1]\n")).parallel.grid == (2, 1, 1)
    for bad in ("[2, 1]", "[0, 1, 1]", "[2.0, 1, 1]", '"auto"'):
        assert "[parallel] grid: expected three integers >= 1" in error_of(tmp_path, GOOD + f"[parallel]\ngrid = {bad}\n")
    assert "[parallel] ranks: unknown key" in error_of(tmp_path, GOOD + "[parallel]\nranks = 2\n")


def test_the_annotated_example_of_docs_md_is_valid(tmp_path):
    """docs/md.md's "annotated example with every key" is read as it stands (it set ensemble =
    "nvt" beside a barostat, which the validator refuses)."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "md.md").read_text()
    block = re.search(r"An annotated example with every key:\n\n```toml\n(.*?)```", text, re.S).group(1)
    s = load_run_settings(write(tmp_path, block))
    assert s.md.ensemble == "npt" and s.md.thermostat is not None and s.md.barostat is not None
