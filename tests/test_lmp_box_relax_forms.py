"""numdp lmp reads LAMMPS' whole `fix box/relax` grammar (keywords in order, a later one overriding
an earlier one) and runs the forms that are one of numdp's three cell relaxations: x, y, z relaxed
to one pressure, coupled (iso) or not (aniso), with the three tilts relaxed to 0 (tri) or none.

Real LAMMPS (22 Jul 2025 update 2, the LJ crystals of tools/make_box_relax_fixtures.py) runs
`x 0.0 y 0.0 z 0.0` and `iso 0.0 couple none` as `aniso 0.0`, `aniso 0.0 couple xyz` and
`x 0 y 0 z 0 couple xyz` as `iso 0.0`, `x 0.0 y 0.0 z 0.0 xy 0.0 xz 0.0 yz 0.0` and `aniso 0.0 xy 0
xz 0 yz 0 scalexy no` as `tri 0.0`: the same iterations and final cell to the last printed digit
(with a hydrostatic target its deviatoric terms are zero); `dilate partial` (group all) and
`fixedpoint` move the cell and atoms by a rigid shift (the final energy within 2e-15 relative).
Every other target is refused in one line saying why."""
import pytest

from numdp.errors import InputError
from numdp.lammps.translate import lammps_bar, translate

HEAD = "units metal\nread_data conf.data\npair_style deepmd model.dp\npair_coeff * *\nmin_style cg\n"


def _box(tmp_path, fix: str, triclinic: bool = True) -> dict:
    """The [minimize] box of `fix`, the box made triclinic (as DP-GEN's relaxation does) or not."""
    script = HEAD + ("change_box all triclinic\n" if triclinic else "") \
        + f"fix 1 all box/relax {fix}\nminimize 0 1e-10 5000 500000\n"
    return translate(script, "in.lammps", {}, tmp_path).tables["minimize"]["box"]


@pytest.mark.parametrize("canonical, forms", [
    ("aniso 0.0", ["x 0.0 y 0.0 z 0.0", "iso 0.0 couple none", "z 0 x 0 y 0 couple none",
                   "aniso 0.0 dilate partial fixedpoint 1 2 3 scalexy yes scalexz on scaleyz 1",
                   "aniso 0.0 dilate all nreset 10"]),
    ("iso 0.0", ["aniso 0.0 couple xyz", "x 0 y 0 z 0 couple xyz", "couple xyz iso 0.0"]),
    ("tri 0.0", ["x 0.0 y 0.0 z 0.0 xy 0.0 xz 0.0 yz 0.0", "aniso 0.0 xy 0 xz 0 yz 0 scalexy no",
                 "tri 0.0 scalexy no fixedpoint 0 0 0"]),
    ("iso 250.0 vmax 0.001", ["x 250 y 250 z 250 couple xyz vmax 0.001", "iso 1 vmax 0.5 iso 250.0 vmax 0.001"]),
])
def test_equivalent_forms_translate_alike(tmp_path, canonical, forms):
    want = _box(tmp_path, canonical)
    for form in forms:
        assert _box(tmp_path, form) == want, form


def test_the_targets_and_couplings(tmp_path):
    assert _box(tmp_path, "x 250 y 250 z 250") == {"coupling": "anisotropic", "pressure": lammps_bar(250.0)}
    assert _box(tmp_path, "tri -3000") == {"coupling": "triclinic", "pressure": lammps_bar(-3000.0)}
    assert _box(tmp_path, "iso 0 vmax 0.01")["coupling"] == "isotropic"


@pytest.mark.parametrize("fix, message", [
    ("x 0.0", "relaxing x only"),
    ("x 0 y 0", "relaxing x y only"),
    ("aniso 0 xy 0", "relaxing x y z xy only"),
    ("x 0 y 0 z 100", "non-hydrostatic target"),
    ("tri 0 xy 5", "non-hydrostatic target"),
    ("iso 0.0 couple xy", "couple xy"),
    ("tri 0 couple xyz", "tilts with couple xyz"),
    ("aniso 0 scalexy no", "scalexy no"),
    ("tri 0 scaleyz yes", "scaling it (scaleyz yes)"),
    ("aniso 0 scalexz maybe", "scalexz maybe: yes or no"),
    ("iso 0 dilate some", "dilate some"),
    ("iso 0 couple all", "couple all"),
    ("iso 0 flip yes", "box/relax keyword flip"),
    ("iso", "needs a target pressure"),
    ("iso 0 fixedpoint 1 2", "fixedpoint: missing value"),
    ("iso 0 vmax 0", "vmax"),
    ("iso 0 nreset -1", "nreset"),
])
def test_other_targets_refused_in_one_line(tmp_path, fix, message):
    with pytest.raises(InputError) as err:
        _box(tmp_path, fix)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_tilts_of_an_orthogonal_box_refused_as_lammps(tmp_path):
    """LAMMPS refuses xy/xz/yz targets on a box it holds orthogonal (no change_box all triclinic,
    no xy xz yz line in the data file): "Cannot specify Pxy/Pxz/Pyz in fix box/relax with
    non-triclinic box"; the lengths alone are fine there."""
    with pytest.raises(InputError) as err:
        _box(tmp_path, "tri 0.0", triclinic=False)
    assert "non-triclinic box" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "conf.data").write_text("t\n\n1 atoms\n1 atom types\n0 4 xlo xhi\n0 4 ylo yhi\n0 4 zlo zhi\n"
                                        "0 0 0 xy xz yz\n\nAtoms # atomic\n\n1 1 0 0 0\n")
    assert _box(tmp_path, "tri 0.0", triclinic=False)["coupling"] == "triclinic"   # the data file's xy xz yz line
    (tmp_path / "ortho").mkdir()
    assert _box(tmp_path / "ortho", "aniso 0.0", triclinic=False)["coupling"] == "anisotropic"
    # LAMMPS' box without tilts scales none: scalexy no there changes nothing (refused with tilts: above)
    assert _box(tmp_path / "ortho", "aniso 0.0 scalexy no scaleyz no", triclinic=False)["coupling"] == "anisotropic"
