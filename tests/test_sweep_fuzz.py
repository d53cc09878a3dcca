"""The classes of input mistakes that tools/fuzz_inputs.py found giving a traceback or a run without
end instead of one line: each is refused by the validator (numdp.config, numdp.io.structure) with an
InputError naming the file and key, before any model is loaded or any output is touched.  Values at
the limits themselves are still accepted.  Validation only: no MD, no model."""
import math
import re
from pathlib import Path

import numpy as np
import pytest

from numdp.config import CHAIN_MAX, COUPLING_STEPS_MAX, TEMPERATURE_MAX, TIMESTEP_MAX, load_run_settings
from numdp.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
WATER = (ROOT / "inputs" / "water" / "md.toml").read_text()   # nose-hoover NVT, timestep 0.0005 ps
CU = (ROOT / "inputs" / "cu" / "md.toml").read_text()         # csvr + c-rescale NPT, timestep 0.002 ps


def _input(tmp_path, text: str, **replace) -> Path:
    """`text` with each `key = ...` line of the keys in `replace` (a key once in the text, or
    an inline key `key = value` inside a table) rewritten; written to tmp_path/md.toml."""
    for key, value in replace.items():
        text, n = re.subn(rf"(?m)(^|[{{,]\s*){key} = [^,}}\n#]+", rf"\g<1>{key} = {value}", text, count=1)
        assert n == 1, key
    path = tmp_path / "md.toml"
    path.write_text(text)
    return path


def _refused(path: Path, key: str) -> str:
    with pytest.raises(InputError) as info:
        load_run_settings(path)
    message = str(info.value)
    assert message.startswith("md.toml: ") and key in message and "\n" not in message, message
    return message


# -- huge values: an overflow, a division by zero or an allocation without end before ----------------

@pytest.mark.parametrize("base, key, value, shown", [
    (WATER, "tau", "1e300", "[md] thermostat.tau"),              # nose-hoover: OverflowError in chain_masses
    (CU, "tau", "1e300", "[md] thermostat.tau"),                 # csvr: ZeroDivisionError in half_step
    (WATER, "temperature", "1e300", "[system] velocities.temperature"),
    (CU, "timestep", "1e300", "[md] timestep"),
    (WATER, "skin", "1e300", "[neighbor] skin"),                 # MPI ghost exchange: ~1e299 hops
])
def test_huge_values_are_refused(tmp_path, base, key, value, shown):
    _refused(_input(tmp_path, base, **{key: value}), shown)


def test_huge_thermostat_target_and_chain_are_refused(tmp_path):
    # (the first `temperature` of the water input is [system] velocities'; its thermostat's is the second)
    text = WATER.replace("temperature = 330.0, tau", "temperature = 1e300, tau")
    assert text != WATER
    _refused(_input(tmp_path, text), "[md] thermostat.temperature")
    ramp = WATER.replace("temperature = 330.0, tau", "temperature = [300.0, 1e300], tau")
    _refused(_input(tmp_path, ramp), "[md] thermostat.temperature")
    chain = WATER.replace("tau = 0.1 }", f"tau = 0.1, chain = {2**62} }}")
    assert "must be <=" in _refused(_input(tmp_path, chain), "[md] thermostat.chain")


def test_weak_barostat_coupling_is_refused(tmp_path):
    message = _refused(_input(tmp_path, CU.replace("tau = 0.5", "tau = 1e300")), "[md] barostat.tau")
    assert "timesteps" in message


def test_huge_minimize_timestep_is_refused(tmp_path):
    text = WATER.split("[md]")[0] + "[minimize]\nsteps = 1\ntimestep = 1e300\n"
    text = text.replace("velocities = { temperature = 330.0, seed = 1 }", "")
    _refused(_input(tmp_path, text), "[minimize] timestep")


def test_values_at_the_limits_are_accepted(tmp_path):
    """The limits refuse only what lies beyond them."""
    dt = 0.002
    tau = COUPLING_STEPS_MAX * dt
    text = CU.replace("tau = 0.1", f"tau = {tau!r}").replace("tau = 0.5", f"tau = {tau!r}")
    text = text.replace("temperature = 300.0, seed", f"temperature = {TEMPERATURE_MAX.value!r}, seed")
    s = load_run_settings(_input(tmp_path, text))
    assert s.md.thermostat.tau == tau and s.md.barostat.tau == tau
    assert s.system.velocities.temperature == TEMPERATURE_MAX.value
    # just beyond: the next double above tau
    _refused(_input(tmp_path, text.replace(f"tau = {tau!r}", f"tau = {math.nextafter(tau, math.inf)!r}", 1)),
             "[md] thermostat.tau")
    chain = WATER.replace("tau = 0.1 }", f"tau = 0.1, chain = {CHAIN_MAX.value} }}")
    s = load_run_settings(_input(tmp_path, chain, timestep=repr(TIMESTEP_MAX.value)))
    assert s.md.timestep == TIMESTEP_MAX.value and s.md.thermostat.chain == CHAIN_MAX.value


# -- replicate: a list of 2^62 images was built before -----------------------------------------------

def test_huge_replicate_is_refused_before_tiling():
    from numdp.io.structure import MAX_ATOMS, Structure, replica_shifts

    s = Structure(positions=np.zeros((2, 3)), box=np.eye(3) * 3.0, elements=["Cu", "Cu"], type_ids=None,
                  velocities=None, masses=None, source="start.data")
    with pytest.raises(InputError, match=r"start.data: replicate \[4611686018427387904, 1, 1\] makes"):
        replica_shifts(s, [2**62, 1, 1])
    # the largest tiling within the limit is only checked, not refused: (MAX_ATOMS // 2) replicas of 2
    # atoms along c would be built, so the test stops at the check by asking one atom more
    with pytest.raises(InputError, match="more than 2147483647"):
        replica_shifts(s, [1, 1, MAX_ATOMS // 2 + 1])
    shifts, box = replica_shifts(s, [2, 1, 1])
    assert shifts.shape == (2, 3) and box[0, 0] == 6.0


# -- through the command line: one line, status 2, the previous run's outputs kept --------------------

def test_cli_one_line_and_outputs_kept(tmp_path, capsys):
    from numdp.cli import main

    path = _input(tmp_path, WATER, tau="1e300")
    old = {"log.txt": b"previous log\n", "traj.h5md": b"previous trajectory", "checkpoint.h5": b"previous checkpoint"}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("numdp run: error: md.toml: [md] thermostat.tau: must be <="), err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "md.toml"} == old


def test_a_cutoff_beyond_any_cell_is_one_line():
    """`numdp neighbor-stat -r 1e300` overflowed the int64 count of periodic images (a ValueError
    from a broadcast into (0, 3)); `[neighbor] skin = 1e300` made the MPI ghost exchange loop
    ~1e299 hops.  The cutoff's images are estimated in floating point first, and the skin has
    a maximum."""
    from numdp.neighbor import extend

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")   # one line: no RuntimeWarning of an overflow before it
        with pytest.raises(InputError, match=r"extended atoms .* is the cutoff right\?"):
            extend(np.zeros((2, 3)), np.zeros(2, dtype=np.int32), np.eye(3) * 5.0, 1e300)
    ext = extend(np.zeros((2, 3)), np.zeros(2, dtype=np.int32), np.eye(3) * 5.0, 6.0)
    assert ext.nloc == 2 and ext.positions.shape[0] > 2
