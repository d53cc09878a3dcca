"""One-line messages for users' mistakes in the inputs of numdp ipi, numdp run and numdp lmp: each
names the file, key, atom or option concerned and ends the command with status 2, and the exit
status of a command stopped by a signal is 128 + that signal's number."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main
from numdp.errors import InputError
from numdp.io.structure import assign_types, read_extxyz, read_lammps_data, write_lammps_data

ROOT = Path(__file__).resolve().parents[1]
WATER = ROOT / "inputs" / "water"


def water_run(tmp_path: Path, start: str | None = None, system_extra: str = "") -> Path:
    """The shipped water input (10 steps) in tmp_path, its start file replaced by `start`."""
    for name in ("model.h5", "start.xyz"):
        shutil.copy(WATER / name, tmp_path / name)
    text = (WATER / "md.toml").read_text().replace("steps = 400", "steps = 10")
    if start is not None:
        text = text.replace('file = "start.xyz"', f'file = "{start}"')
    text = text.replace("[system]\n", f"[system]\n{system_extra}")
    (tmp_path / "md.toml").write_text(text)
    return tmp_path / "md.toml"


def error_of(capsys, argv) -> str:
    """The one-line error of `numdp ARGV`, which must exit with status 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def lammps_types(tmp_path: Path, top_type: int) -> Path:
    """The water box as a LAMMPS data file whose header says 3 atom types and whose first atom
    has type `top_type` (the others: O = 1, H = 2)."""
    s = read_extxyz(WATER / "start.xyz")
    t = np.array([0 if e == "O" else 1 for e in s.elements])
    t[0] = top_type - 1
    path = tmp_path / "s2.data"
    write_lammps_data(path, t, s.positions, s.box)
    text = path.read_text()
    if "3 atom types" not in text:
        text = text.replace("2 atom types", "3 atom types")
        path.write_text(text)
    return path


# -- numdp ipi ------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["localhost:99999", "localhost:0", "localhost:65536"])
def test_ipi_port_out_of_range(capsys, address):
    err = error_of(capsys, ["ipi", "-m", str(WATER / "model.h5"), "--address", address,
                            "--types", "O", "H", "H", "--wait", "0"])
    assert err == f"numdp ipi: error: --address: port must be 1-65535, got '{address}'"


def test_ipi_negative_wait(capsys):
    from numdp.ipi import check_target

    err = error_of(capsys, ["ipi", "-m", str(WATER / "model.h5"), "--address", "localhost:31415",
                            "--types", "O", "H", "H", "--wait", "-1"])
    assert err == "numdp ipi: error: --wait: must be >= 0 seconds, got -1"
    with pytest.raises(InputError, match="--wait: must be >= 0 seconds, got nan"):  # would retry forever
        check_target("localhost:31415", None, wait=float("nan"))


@pytest.mark.parametrize("key, value, message", [
    ("port", "abc", "'port' must be an integer 1-65535, got \"abc\""),
    ("port", 70000, "'port' must be an integer 1-65535, got 70000"),
    ("port", True, "'port' must be an integer 1-65535, got true"),
    ("use_unix", "no", "'use_unix' must be true or false, got \"no\""),
    ("host", 5, "'host' must be a non-empty string, got 5"),
    ("graph_file", ["a.h5"], "'graph_file' must be a non-empty string, got [\"a.h5\"]"),
])
def test_ipi_dp_json_keys_are_typed(tmp_path, capsys, key, value, message):
    cfg = {"graph_file": str(WATER / "model.h5"), "coord_file": str(WATER / "start.xyz"),
           "atom_type": {"O": 0, "H": 1}, key: value}
    path = tmp_path / "water.json"
    path.write_text(json.dumps(cfg))
    err = error_of(capsys, ["ipi", "--dp-json", str(path), "--wait", "0"])
    assert err == f"numdp ipi: error: {path}: {message}"


def test_ipi_dp_json_with_a_byte_order_mark_is_read(tmp_path):
    from numdp.commands.ipi import _dp_json

    path = tmp_path / "water.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"use_unix": False, "port": 31416}).encode())
    assert _dp_json(str(path))["address"] == "localhost:31416"


def test_ipi_numeric_types_are_named_as_the_file_numbers_them(tmp_path, capsys):
    """dp_ipi's atom_type names the types of a LAMMPS data file "1", "2" (not "0", "1"); --init
    with a type beyond the type_map says LAMMPS' number and how ipi names elements."""
    from numdp.commands.ipi import _types_from_atom_type

    data = lammps_types(tmp_path, 2)
    types = _types_from_atom_type(str(data), {"1": 0, "2": 1}, ["O", "H"], "x.json")
    expected = [0 if e == "O" else 1 for e in read_extxyz(WATER / "start.xyz").elements]
    expected[0] = 1   # the atom lammps_types gave type 2
    assert types.tolist() == expected
    data = lammps_types(tmp_path, 3)
    err = error_of(capsys, ["ipi", "-m", str(WATER / "model.h5"), "--init", str(data),
                            "--unix", "x", "--wait", "0"])
    assert err == (f"numdp ipi: error: {data}: numeric atom types up to 3 do not fit the model's type_map "
                   f"['O', 'H']; name them with element names in the --init file, or --types ELEMENT ...")


# -- start structures -------------------------------------------------------------------------------


def test_lammps_type_beyond_the_type_map_is_named_as_in_the_file(tmp_path, capsys):
    data = lammps_types(tmp_path, 3)
    s = read_lammps_data(data)
    with pytest.raises(InputError) as err:
        assign_types(s, ["O", "H"])
    assert str(err.value) == (f"{data}: numeric atom types up to 3 do not fit the model's type_map "
                              f"['O', 'H']; name them with [system] type_names")
    toml = water_run(tmp_path, "s2.data")
    assert "numeric atom types up to 3 do not fit" in error_of(capsys, ["run", str(toml)])


LMP = """\
units metal
read_data s2.data
pair_style deepmd model.h5
pair_coeff * * {elements}
velocity all create 300 5
fix 1 all nve
run 3
"""


@pytest.mark.parametrize("elements, message", [
    ("", "{data}: numeric atom types up to 3 do not fit the model's type_map ['O', 'H']; name them "
         "with pair_coeff * * ELEMENT ..., one element per atom type"),
    ("O H", "in.lammps: pair_coeff: 2 names, but {data} uses 3 atom types"),
])
def test_lmp_points_to_pair_coeff_not_to_the_toml_key(tmp_path, monkeypatch, capsys, elements, message):
    data = lammps_types(tmp_path, 3)
    shutil.copy(WATER / "model.h5", tmp_path / "model.h5")
    (tmp_path / "in.lammps").write_text(LMP.format(elements=elements))
    monkeypatch.chdir(tmp_path)
    assert main(["lmp", "-i", "in.lammps"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "numdp lmp: error: " + message.format(data=data)


def test_singular_cell_names_the_file(tmp_path, capsys):
    text = (WATER / "start.xyz").read_text().replace(
        'Lattice="12.4446611404 0.0000000000 0.0000000000', 'Lattice="0 0 0', 1)
    (tmp_path / "flat.xyz").write_text(text)
    toml = water_run(tmp_path, "flat.xyz")
    err = error_of(capsys, ["run", str(toml)])
    assert err.startswith(f"numdp run: error: {tmp_path / 'flat.xyz'} frame 0: the cell is singular (volume 0 A^3")


def test_non_finite_coordinate_is_shown_as_the_file_holds_it(tmp_path, capsys):
    lines = (WATER / "start.xyz").read_text().splitlines(keepends=True)
    first = lines[2].split()
    lines[2] = f"{first[0]} nan {first[2]} {first[3]}\n"
    (tmp_path / "nan.xyz").write_text("".join(lines))
    toml = water_run(tmp_path, "nan.xyz")
    err = error_of(capsys, ["run", str(toml)])
    assert err == (f"numdp run: error: {tmp_path / 'nan.xyz'}:3: atom 0 has a non-finite coordinate "
                   f"nan {first[2]} {first[3]}")
    assert not list(tmp_path.glob("#*"))  # refused before any backup of earlier outputs
    # a LAMMPS data file: the line, the atom id and its coordinates as written
    data = lammps_types(tmp_path, 2)
    text = data.read_text().splitlines(keepends=True)
    k = next(i for i, ln in enumerate(text) if ln.startswith("5 "))
    w = text[k].split()
    text[k] = " ".join(w[:2] + [w[2], "inf", w[4]] + w[5:]) + "\n"
    data.write_text("".join(text))
    with pytest.raises(InputError) as exc:
        read_lammps_data(data)
    assert str(exc.value) == f"{data}:{k + 1}: atom 5 has a non-finite coordinate {w[2]} inf {w[4]}"


def test_pbc_is_echoed_in_toml_spelling(tmp_path, capsys):
    toml = water_run(tmp_path, system_extra="pbc = [true, false]\n")
    err = error_of(capsys, ["run", str(toml)])
    assert err.endswith("[system] pbc: expected three booleans (periodic along a, b, c) like "
                        "[true, true, false], got [true, false]")


def test_toml_value_spells_values_as_toml():
    from numdp.validate import toml_value

    assert toml_value([True, False, 1, 2.5, "a"]) == '[true, false, 1, 2.5, "a"]'
    assert toml_value({"kind": "csvr", "on": True}) == '{ kind = "csvr", on = true }'
    assert len(toml_value(list(range(100)))) == 60


# -- input files --------------------------------------------------------------------------------------


def test_toml_with_a_byte_order_mark_is_read(tmp_path):
    from numdp.config import load_run_settings

    toml = water_run(tmp_path)
    toml.write_bytes(b"\xef\xbb\xbf" + toml.read_bytes())
    settings = load_run_settings(toml)
    assert settings.md.steps == 10 and not settings.text.startswith("\ufeff")


def test_restart_says_what_is_wrong_with_the_file(tmp_path, capsys):
    toml = water_run(tmp_path)
    (tmp_path / "text.h5").write_text("not a checkpoint\n")
    assert error_of(capsys, ["run", str(toml), "--restart", str(tmp_path / "text.h5")]).endswith(
        "text.h5: not an HDF5 file (a numdp checkpoint is one)")
    (tmp_path / "cut.h5").write_bytes((WATER / "model.h5").read_bytes()[:3000])
    err = error_of(capsys, ["run", str(toml), "--restart", str(tmp_path / "cut.h5")])
    assert "cut.h5: truncated or corrupt HDF5 file (" in err and "truncated file" in err
    assert error_of(capsys, ["run", str(toml), "--restart", str(WATER / "model.h5")]).endswith(
        "model.h5: not a numdp checkpoint (no /numdp/state group)")


# -- signals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_status_is_128_plus_the_signal(sig):
    from numdp.signals import StopRequest, exit_status

    with pytest.raises(KeyboardInterrupt) as exc:
        with StopRequest("test", announce=False):
            os.kill(os.getpid(), sig)
            raise KeyboardInterrupt  # what numdp run raises after the checkpoint
    assert exit_status(exc.value) == 128 + sig
    assert exit_status(KeyboardInterrupt()) == 130  # Python's own SIGINT, before any StopRequest


ABORT = textwrap.dedent("""
    import os, signal, time
    from numdp.signals import REPEAT_WINDOW, StopRequest
    with StopRequest("test"):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)   # a second, different signal: aborts at once
        time.sleep(REPEAT_WINDOW)
    print("not reached")
""")


def test_second_signal_aborts_with_its_own_status():
    r = subprocess.run([sys.executable, "-c", ABORT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    assert "second SIGTERM: aborted at once" in r.stderr and "not reached" not in r.stdout
