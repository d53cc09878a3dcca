"""numdp.validate: the one input validator behind `numdp run` and `numdp train` inputs."""
import pytest

from numdp.config import load_run_settings
from numdp.train.config import load_config
from numdp.validate import RUN_WORDING, TRAIN_WORDING, Table
from tests_util import input_error_message as message


@pytest.mark.parametrize("wording", [RUN_WORDING, TRAIN_WORDING])
def test_numbers_reject_bools_infinities_and_out_of_range(wording):
    t = Table("in.toml", "md", {"a": True, "b": float("inf"), "c": -1.0, "d": 2.5, "e": 3}, wording)
    assert "in.toml: [md] a: expected a number, got True" == message(t.number, "a")
    assert message(t.number, "b").startswith("in.toml: [md] b: ")
    assert "in.toml: [md] c: must be > 0, got " in message(t.number, "c", positive=True)
    assert "[md] d: expected an integer, got 2.5" in message(t.integer, "d")
    assert "[md] e: must be >= 4, got 3" in message(t.integer, "e", minimum=4)
    assert t.number("e") == 3.0 and isinstance(t.number("e"), float) and t.integer("e") == 3
    assert t.number("absent", 1.5) == 1.5 and t.integer("absent", None) is None
    assert "[md] absent: required" in message(t.number, "absent")
    assert t.boolean("flag", None) is None and t.choice("kind", ("a",), None) is None  # optional, absent
    assert "[md] flag: expected true or false, got 3" in message(Table("in.toml", "md", {"flag": 3}, wording).boolean, "flag")


def test_unknown_keys_before_or_after_reading():
    t = Table("in.toml", "neighbor", {"skin": 2.0, "cutoff": 3.0}, RUN_WORDING)
    assert message(t.check_keys, ("skin",)) == "in.toml: [neighbor] cutoff: unknown key (allowed: skin)"
    t = Table("in.toml", "loss", {"start_pref_e": 1.0, "start_pref_x": 1.0}, TRAIN_WORDING)
    t.number("start_pref_e", 0.0)
    assert message(t.done) == "in.toml: [loss] start_pref_x: unknown key; did you mean start_pref_e?"
    t.done(also=("start_pref_x",))


def test_inline_tables_and_nested_sections_are_named():
    root = Table.root("in.toml", {"md": {"thermostat": {"tau": 0}}, "model": {"descriptor": []}}, RUN_WORDING)
    thermostat = root.section("md").sub("thermostat")
    assert "in.toml: [md] thermostat.tau: must be > 0, got 0" == message(thermostat.number, "tau", positive=True)
    assert "in.toml: [model.descriptor]: expected a table, got []" == message(root.section("model").section, "descriptor")
    assert "in.toml: [system]: required table missing" == message(root.section, "system")
    assert "in.toml: [thermo]: unknown table (allowed: md, model)" == message(
        Table.root("in.toml", {"thermo": {}}, RUN_WORDING).check_tables, ("md", "model"))


def test_undecodable_input_is_one_line_for_both_commands(tmp_path):
    p = tmp_path / "in.toml"
    p.write_bytes(b'[model]\nfile = "\xff\xfe"\n')
    for load in (load_run_settings, load_config):
        assert message(load, p).startswith(f"{p}: cannot read (")
