"""A DeePMD-kit + LAMMPS user's first commands: dp's names for numdp's commands and options, and
the first mistakes such a user makes, each answered by one line that says what to do (exit 2)."""
import pytest

from numdp.cli import build_parser, main


def _one_error_line(argv, capsys) -> str:
    """The single stderr line of `numdp ARGV`, which must exit with status 2 (a return or an
    argparse SystemExit)."""
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1, err
    return err[0]


def test_convert_backend_is_dps_name_for_convert():
    """`dp convert-backend IN OUT` is `numdp convert IN OUT` (docs/from-deepmd-kit.md): dp's command
    name was refused as an invalid choice."""
    args = build_parser().parse_args(["convert-backend", "water.pth", "water.dp", "--atomic-virial"])
    assert args._module == "numdp.commands.convert"
    assert (args.input, args.output, args.atomic_virial) == ("water.pth", "water.dp", True)


@pytest.mark.parametrize("argv", [["test", "-m", "m.dp", "-s", "sys", "-v", "DEBUG"],
                                  ["freeze", "-l", "freeze.log"],
                                  ["train", "input.json", "--log-level=INFO"],
                                  ["compress", "-i", "m.h5", "-vDEBUG"]])
def test_dp_logging_options_say_where_numdp_logs(argv, capsys):
    """dp's -v/--log-level and -l/--log-path (not taken by numdp, docs/from-deepmd-kit.md) gave
    argparse's usage block and 'unrecognized arguments'; now one line saying what to do instead."""
    line = _one_error_line(argv, capsys)
    assert line.startswith(f"numdp {argv[0]}: error: unrecognized arguments: ")
    assert "stdout" in line and "2>&1" in line


def test_lmp_script_without_dash_i_says_to_use_it(capsys):
    """`numdp lmp in.lammps` (the script as an argument) was the top-level usage block and
    'unrecognized arguments'; now the line names the command that runs it."""
    line = _one_error_line(["lmp", "in.lammps"], capsys)
    assert line.startswith("numdp lmp: error: ") and "numdp lmp -i in.lammps" in line
    # with -i given, a second script is only unrecognized (no hint to use -i)
    assert _one_error_line(["lmp", "-i", "in.lmp", "in2.lmp"], capsys) == (
        "numdp lmp: error: unrecognized arguments: in2.lmp")


def test_other_unknown_options_are_still_one_line(capsys):
    line = _one_error_line(["run", "md.toml", "--no-such-option"], capsys)
    assert line == "numdp run: error: unrecognized arguments: --no-such-option"


def test_lammps_script_given_to_run_names_numdp_lmp(tmp_path, capsys):
    """`numdp run in.lammps` said "not valid TOML (Expected '=' after a key ...)"."""
    script = tmp_path / "in.lammps"
    script.write_text("units metal\nread_data conf.lmp\npair_style deepmd graph.pb\nrun 100\n")
    line = _one_error_line(["run", str(script)], capsys)
    assert line == (f"numdp run: error: in.lammps: a LAMMPS input script, not a numdp run input (TOML, "
                    f"docs/md.md): run it with numdp lmp -i {script}")


def test_yaml_training_input_given_to_run_names_numdp_train(tmp_path, capsys):
    """DeePMD-kit's input.yaml given to numdp run said "not valid TOML"; input.json named numdp train."""
    path = tmp_path / "input.yaml"
    path.write_text("model:\n  type_map: [O, H]\n")
    assert _one_error_line(["run", str(path)], capsys).endswith("input.yaml is a training input: numdp train")


@pytest.mark.parametrize("replace, expected", [
    (("thermostat =", "themostat ="), "[md] themostat: unknown key (allowed: timestep, steps, ensemble, thermostat, "
                                      "barostat, seed); did you mean thermostat?"),
    (("[neighbor]", "[neighbour]"), "[neighbour]: unknown table (allowed: model, system, md, minimize, neighbor, "
                                    "output, safety, parallel, model_devi); did you mean neighbor?"),
    (("{ temperature = 330.0, seed", "{ temp = 330.0, seed"),
     "[system] velocities.temp: unknown key (allowed: temperature, seed); did you mean temperature?")])
def test_misspelt_run_key_suggests_the_right_one(tmp_path, capsys, replace, expected):
    """A misspelt key listed the allowed ones but did not say which was meant (DeePMD-kit's
    input check does: "Did you mean: decay_steps?")."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "inputs" / "water" / "md.toml").read_text()
    assert replace[0] in text
    (tmp_path / "md.toml").write_text(text.replace(replace[0], replace[1]))
    assert _one_error_line(["run", str(tmp_path / "md.toml")], capsys) == f"numdp run: error: md.toml: {expected}"


def test_misspelt_training_key_suggests_the_right_one():
    from numdp.errors import InputError
    from numdp.validate import TRAIN_WORDING, Table

    t = Table("input.json", "learning_rate", {"decay_step": 5000}, TRAIN_WORDING)
    for key in ("type", "start_lr", "stop_lr", "decay_steps"):
        t.raw(key, None)
    with pytest.raises(InputError) as exc:
        t.done()
    assert str(exc.value) == "input.json: [learning_rate] decay_step: unknown key; did you mean decay_steps?"


def test_no_suggestion_where_several_keys_are_as_close():
    from numdp.validate import did_you_mean

    assert did_you_mean("start_pref_x", ("start_pref_e", "start_pref_f", "start_pref_v")) == ""
    assert did_you_mean("cutoff", ("skin",)) == ""


def test_restart_named_as_in_the_input_folder_says_where_the_checkpoint_is(tmp_path, capsys, monkeypatch):
    """`numdp run inputs/water/md.toml --restart checkpoint.h5` from the repository root said only
    "file not found": the input writes its checkpoint beside itself, the command line's path is the
    working folder's."""
    import shutil
    from pathlib import Path

    water = Path(__file__).parents[1] / "inputs" / "water"
    run = tmp_path / "run"
    run.mkdir()
    for name in ("md.toml", "model.h5", "start.xyz"):
        shutil.copy(water / name, run / name)
    (run / "checkpoint.h5").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(["run", "run/md.toml", "--restart", "checkpoint.h5"], capsys)
    assert line == ("numdp run: error: --restart checkpoint.h5: file not found (the input writes its checkpoint "
                    "beside it: --restart run/checkpoint.h5)")
    (run / "checkpoint.h5").unlink()   # no such file beside the input either: no hint
    assert _one_error_line(["run", "run/md.toml", "--restart", "checkpoint.h5"], capsys) == (
        "numdp run: error: --restart checkpoint.h5: file not found")
