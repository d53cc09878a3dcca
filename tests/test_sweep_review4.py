"""Review of the session's commits 902503d..5629021: the defects found, each a test.

- `step` in a formula after `minimize`: numdp lmp gave maxiter (the run's largest step), where
  LAMMPS' step is the iteration FIRE stopped at (etol / ftol reached, often far earlier):
  `print "$(step)"` and `write_data final.$(step).data` then named a step the run never ends at.
- did_you_mean suggested a key that names another setting: [output] checkpoint_freq -> checkpoint
  (the file), trajectory_every -> trajectory, log_every -> every (the trajectory's interval),
  [system] file_name -> type_names, [training] disp_every -> disp_avg, save_file -> save_freq.
- A broken TOML input with a key spaced `lattice ={ ... }` was called a LAMMPS script, hiding the
  TOML error.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from numdp.errors import InputError
from numdp.lammps.translate import translate
from numdp.validate import did_you_mean

HEAD = "units metal\nread_data conf.data\npair_style deepmd model.dp\npair_coeff * *\n"

# the keys numdp.config's tables allow (check_keys) and those numdp.train.config reads from
# inputs/water/train.toml's [training] (Table.done allows the keys it read)
OUTPUT = ("trajectory", "format", "every", "fields", "force_unit", "thermo_every", "log", "checkpoint",
          "checkpoint_every", "progress", "columns", "thermo_columns", "thermo_header")
MD = ("timestep", "steps", "ensemble", "thermostat", "barostat", "seed")
SYSTEM = ("file", "lattice", "frame", "replicate", "replicate_order", "velocities", "masses", "type_names", "pbc",
          "momentum")
TRAINING = ("systems", "batch_size", "numb_steps", "seed", "disp_freq", "save_freq", "disp_file", "save_ckpt",
            "model_file", "data_stat_nbatch", "disp_avg", "disp_training")
LOSS = ("type", "start_pref_e", "limit_pref_e", "start_pref_f", "limit_pref_f", "start_pref_v", "limit_pref_v")


def test_step_after_minimize_is_refused(tmp_path):
    """After `minimize 0 1e-3 100 1000` LAMMPS' step is where FIRE stopped (ftol reached: any step
    up to 100); numdp lmp printed 100 and named write_data's file with it."""
    minimize = "min_style fire\nminimize 0 1e-3 100 1000\n"
    before = translate(HEAD + 'print "at $(step)"\n' + minimize, "in.lammps", {}, tmp_path)
    assert "print: at 0" in before.toml   # before it: the step it starts at
    assert translate(HEAD + minimize + 'print "at $(step)"\n', "in.lammps", {}, tmp_path).epilogue is not None
    with pytest.raises(InputError) as err:
        translate(HEAD + minimize + "variable s equal step\nwrite_data out.${s}.data\n", "in.lammps", {}, tmp_path)
    assert "needs the state the last run ended with" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name, allowed, meant", [
    ("checkpoint_freq", OUTPUT, "checkpoint_every"),   # was: checkpoint (a file name)
    ("thermo_freq", OUTPUT, "thermo_every"),
    ("trajectory_every", OUTPUT, None),                # was: trajectory
    ("log_every", OUTPUT, None),                       # was: every (the trajectory's interval)
    ("traj_every", OUTPUT, None),                      # was: thermo_every
    ("file_name", SYSTEM, None),                       # was: type_names
    ("disp_every", TRAINING, "disp_freq"),             # was: disp_avg
    ("save_file", TRAINING, None),                     # was: save_freq (save_ckpt is the file)
    ("start_pref_force", LOSS, "start_pref_f"),        # was: none
    # the suggestions that were right stay
    ("ensamble", MD, "ensemble"), ("time_step", MD, "timestep"), ("nsteps", MD, "steps"),
    ("velocity", SYSTEM, "velocities"), ("replicate_ordre", SYSTEM, "replicate_order"),
    ("start_pref_energy", LOSS, "start_pref_e"), ("decay_step", ("decay_steps", "start_lr"), "decay_steps"),
    ("start_pref_x", ("start_pref_e",), "start_pref_e"), ("start_pref_x", LOSS, None), ("thermo", OUTPUT, None)])
def test_did_you_mean_names_no_other_setting(name, allowed, meant):
    assert did_you_mean(name, allowed) == ("" if meant is None else f"; did you mean {meant}?")


def test_misspelt_checkpoint_interval_in_a_run_input(tmp_path):
    """The whole path: [output] checkpoint_freq = 100 (DeePMD-kit's save_freq habit)."""
    from numdp.config import load_run_settings

    text = (Path(__file__).parents[1] / "inputs" / "water" / "md.toml").read_text()
    assert "checkpoint_every = 200" in text
    (tmp_path / "md.toml").write_text(text.replace("checkpoint_every = 200", "checkpoint_freq = 200"))
    with pytest.raises(InputError) as err:
        load_run_settings(tmp_path / "md.toml")
    assert str(err.value).endswith("; did you mean checkpoint_every?")


def test_broken_toml_with_a_spaced_key_keeps_the_toml_error(tmp_path):
    """`lattice ={ ... }` is a TOML key (a LAMMPS line has no `=` after its command); the input's real
    mistake (here an unquoted string) is what the message must name."""
    from numdp.config import load_run_settings

    path = tmp_path / "md.toml"
    path.write_text('[model]\nfile = "model.h5"\n[system]\nlattice ={ style = "fcc", a = 3.6, cells = [2, 2, 2], '
                    'elements = ["Cu"] }\n[md]\nensemble = nve\n')
    with pytest.raises(InputError) as err:
        load_run_settings(path)
    assert "LAMMPS" not in str(err.value)
    path.write_text("units metal\nread_data conf.data\n")   # a script is still named as one
    with pytest.raises(InputError, match="numdp lmp -i"):
        load_run_settings(path)
