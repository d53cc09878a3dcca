"""`numdp lmp` on hand-written `pair_style deepmd` scripts: LAMMPS semantics that a translation
must keep (found by a sweep of DeePMD-kit's example scripts and the LAMMPS manual).  Each test
states LAMMPS' rule it checks; all are fast (no MD run unless it says so)."""
from __future__ import annotations

import textwrap

import pytest

from numdp.errors import InputError
from numdp.lammps.script import Script
from numdp.lammps.translate import translate


def run_script(text, cli=None):
    """(commands handed on, the Script) of `text`."""
    seen = []
    script = Script("in.lammps", seen.append, cli)
    script.run(textwrap.dedent(text))
    return seen, script


def test_string_variable_is_redefined_index_is_kept():
    """LAMMPS' variable command: a string (like an equal) variable redefines one of its own style;
    an index definition of an existing name is ignored (whatever its style); a string over an
    index one (-v on the command line) is an error."""
    seen, _ = run_script("""
        variable T string 300
        variable T string 500
        variable E equal 1
        variable E index 7
        x ${T} ${E}
        """)
    assert seen[0].args == ("500", "1")
    with pytest.raises(InputError, match=r"^in.lammps:1: variable: cannot redefine variable T as style string "
                                         r"\(it is index, from -v"):
        run_script("variable T string 500\n", {"T": "300"})


HEAD = """
units metal
boundary p p p
read_data conf.data
pair_style deepmd model.h5
pair_coeff * *
"""


def translated(tmp_path, body, head=HEAD, cli=None):
    """numdp lmp's Translation of the script `head` + `body` (no file is read)."""
    return translate(textwrap.dedent(head) + textwrap.dedent(body), "in.lammps", cli or {}, tmp_path)


def refusal(tmp_path, body, head=HEAD, cli=None) -> str:
    with pytest.raises(InputError) as err:
        translated(tmp_path, body, head, cli)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_units_resets_timestep_and_skin(tmp_path):
    """LAMMPS' units command sets the timestep and the neighbor skin to the style's defaults (metal:
    0.001 ps, 2 A): a timestep or neighbor before it does not count.  A lattice before it would
    take its scale in lj units (a reduced density): refused."""
    tr = translated(tmp_path, "fix 1 all nve\nrun 5\n", head="timestep 0.0005\nneighbor 1.0 bin\n" + HEAD)
    assert tr.tables["md"]["timestep"] == 0.001 and tr.tables["neighbor"]["skin"] == 2.0
    tr = translated(tmp_path, "timestep 0.0005\nneighbor 1.0 bin\nfix 1 all nve\nrun 5\n")
    assert tr.tables["md"]["timestep"] == 0.0005 and tr.tables["neighbor"]["skin"] == 1.0
    assert refusal(tmp_path, "", head="lattice fcc 3.61\n" + HEAD).startswith(
        "in.lammps:1: lattice: lattice before units metal")


def test_formula_round_power_and_math_errors():
    """LAMMPS' round() takes halves up (its MYROUND), not Python's half-to-even; an overflow, a domain
    error or 0^(negative) is one line naming the script line, not a traceback; a formula whose v_
    names only make it fail with the definition's stand-in values is defined (evaluated at use)."""
    _, script = run_script("variable T equal 300\n")
    assert [script.evaluate(f) for f in ("round(2.5)", "round(-2.5)", "round(0.5)", "round(1.49)", "2^3^2",
                                         "(-2)^3", "4^0.5")] == [3.0, -2.0, 1.0, 1.0, 64.0, -8.0, 2.0]
    for formula, message in [("exp(1000)", "exp(): math range error"), ("10^400", "10^400: math range error"),
                             ("0^-1", "invalid power expression"), ("(-8)^0.5", "-8^0.5: math domain error"),
                             ("floor(1e308*10)", "floor(): cannot convert"), ("sqrt(-1)", "sqrt(): math domain")]:
        with pytest.raises(InputError) as err:
            run_script(f'print "$({formula})"\n')
        assert str(err.value).startswith("in.lammps:1: print: ") and message in str(err.value), str(err.value)
    seen, _ = run_script("""
        variable T equal 300
        variable s equal sqrt(v_T-100)+ln(v_T-1)*0+1/(v_T-1)*0
        x ${s}
        """)
    assert seen[0].args == ("14.142135623731",)


def test_dt_in_formulas_is_the_timestep_at_that_point(tmp_path):
    """LAMMPS' manual writes fix nvt's Tdamp as $(100.0*dt): the thermo keyword dt is the timestep
    when the formula is evaluated (an equal-style variable: at each use); other thermo keywords
    stay refused."""
    tr = translated(tmp_path, """
        variable td equal 100*dt
        timestep 0.0005
        fix 1 all nvt temp 300 300 $(100.0*dt)
        run 5
        timestep 0.002
        fix 1 all nvt temp 300 300 ${td}
        run 5
        """)
    assert tr.tables["md"]["thermostat"]["tau"] == pytest.approx(0.05, rel=1e-15)
    assert tr.run(1)[0]["md"]["thermostat"]["tau"] == pytest.approx(0.2, rel=1e-15)
    assert "'temp' in formula" in refusal(tmp_path, "fix 1 all nvt temp 300 300 $(100.0*temp)\n")


def test_continuation_comes_before_comments():
    """LAMMPS joins `&` continuations first and strips the comment after: a comment ending in `&`
    takes in the next line (a commented-out command of two lines stays out)."""
    seen, _ = run_script("""
        # fix 1 all npt temp 300 300 0.1 &
            iso 1.0 1.0 1.0
        fix 1 all nvt temp 300 300 &
            0.1   # Tdamp
        run 10 # equilibrate &
        run 20
        fix 2 all nve &   # not the last printable character: no continuation
        """)
    assert [(c.line, c.name, c.args) for c in seen] == [
        (4, "fix", ("1", "all", "nvt", "temp", "300", "300", "0.1")), (6, "run", ("10",)),
        (8, "fix", ("2", "all", "nve", "&"))]


def test_immediate_format_and_print_keywords():
    """$(formula:FORMAT) formats as LAMMPS (a C floating-point format); print's keywords are not
    its text: screen no prints nothing, file / append (a file numdp does not write) are refused."""
    seen, script = run_script("""
        variable T equal 300.123456
        x $(v_T:%.3f) $(v_T*2:%.2e) $(v_T)
        print "T = ${T}" screen yes
        print "hidden" screen no
        """)
    assert seen[0].args == ("300.123", "6.00e+02", "300.12345599999997603")
    assert script.printed == ["T = 300.123456"]
    with pytest.raises(InputError, match=r"^in.lammps:1: print: print \.\.\. file FILE: numdp lmp writes no print"):
        run_script('print "done" file out.txt\n')


def test_if_compares_strings():
    """LAMMPS' if compares two strings with == and != (its manual: if "${myString} == a10"), as
    scripts that choose an ensemble by name do."""
    text = """
        variable ens string npt
        if "${ens} == nvt" then "x nvt" elif "${ens} != npt" "x other" else "x npt"
        if "${ens}==npt" then "y"
        """
    seen, _ = run_script(text)
    assert [(c.name, c.args) for c in seen] == [("x", ("npt",)), ("y", ())]
    with pytest.raises(InputError, match="in.lammps:2: if: 'npt' in formula"):
        run_script('variable ens string npt\nif "${ens} > 1" then "x"\n')


@pytest.mark.parametrize("keyword", ["fparam_from_fix uvt 1", "charge_spin 1.0 2.0", "fparam_from_compute TEMP"])
def test_pair_style_keywords_of_deepmd_kit_are_not_models(tmp_path, keyword):
    """DeePMD-kit 3.2's pair_style deepmd keywords fparam_from_fix and charge_spin are refused by
    name, not read as the file names of more models (a model deviation run of bogus models)."""
    message = refusal(tmp_path, f"pair_style deepmd model.h5 {keyword}\n")
    assert message == f"in.lammps:7: pair_style: keyword {keyword.split()[0]} is not supported by numdp lmp"


def test_dump_modify_element(tmp_path):
    """dump_modify ID element E1 ... En (DeePMD-kit users' dumps for OVITO / VMD) is accepted when it
    names the script's elements of the types, which numdp's element column writes; other names are
    refused on its line; the list ends at the next dump_modify keyword."""
    head = HEAD.replace("pair_coeff * *", "pair_coeff * * O H")
    body = "fix 1 all nve\ndump 1 all custom 5 d.lammpstrj id element x y z\ndump_modify 1 element {} sort id\nrun 5\n"
    tr = translated(tmp_path, body.format("O H"), head=head)
    assert tr.tables["output"]["columns"] == ["id", "element", "x", "y", "z"]
    assert refusal(tmp_path, body.format("H O"), head=head).startswith(
        "in.lammps:9: dump_modify: element H O: numdp writes the element of each type as pair_coeff names it (O H)")
    assert refusal(tmp_path, body.format("O"), head=head).startswith("in.lammps:9: dump_modify: element O:")
    assert "dump_modify: element needs" in refusal(tmp_path, body.format(""), head=head)
