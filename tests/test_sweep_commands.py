"""numdp's secondary commands (show, neighbor-stat, model-devi) where they differed from
DeePMD-kit 3.2's `dp show`, `dp neighbor-stat`, `dp model-devi`: the current folder as the
default system, dp show's attributes numdp lacks, unrecorded metadata, and the neighbour count
of atoms stored outside their cell (where dp neighbor-stat 3.2 undercounts)."""
from pathlib import Path

import numpy as np

from numdp.cli import main
from tests_util import write_system

MODELS = Path(__file__).parent / "data"
ENSEMBLE = [str(MODELS / "dp32_models" / "gelu_relu.dp"), str(MODELS / "dp32_models" / "linear_relu6.dp")]
PTH = MODELS / "pytorch" / "se_a_two_side_f64.pth"   # a frozen PyTorch model: no version recorded


def _water_like(root: Path, nframes: int = 2, seed: int = 5) -> Path:
    """A small periodic O/H system, atoms 0.9 A apart or more, in a 5 A cell."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(3) * 1.6] * 3, indexing="ij"), -1).reshape(-1, 3)[:12]
    coords = grid[None] + rng.uniform(-0.3, 0.3, (nframes, 12, 3))
    box = np.tile(np.diag([5.0, 5.0, 5.0]), (nframes, 1, 1))
    return write_system(root, coords, box, [0, 1, 1] * 4, ["O", "H"])


def test_neighbor_stat_and_model_devi_default_to_the_current_folder(tmp_path, monkeypatch, capsys):
    """dp neighbor-stat and dp model-devi read the systems below the current folder without -s."""
    _water_like(tmp_path / "data" / "sys")
    monkeypatch.chdir(tmp_path)
    assert main(["neighbor-stat", "-s", ".", "-r", "3"]) == 0
    given = capsys.readouterr().out
    assert main(["neighbor-stat", "-r", "3"]) == 0
    default = capsys.readouterr().out
    figures = [line for line in given.splitlines() if line.startswith(("min_nbor_dist", "max_nbor_size"))]
    assert len(figures) == 2 and all(line in default.splitlines() for line in figures)
    assert main(["model-devi", "-m", *ENSEMBLE, "-s", ".", "-o", "given.out"]) == 0
    assert main(["model-devi", "-m", *ENSEMBLE]) == 0          # -o model_devi.out, as dp's
    assert Path("model_devi.out").read_text() == Path("given.out").read_text()
    assert np.loadtxt("model_devi.out").shape == (2, 8)


def test_show_leaves_out_metadata_the_file_does_not_record(capsys):
    """A frozen .pth records no DeePMD-kit version: no 'version None'."""
    assert main(["show", str(PTH), "info"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("Metadata: software deepmd-kit") and "None" not in line


def test_dp_show_attributes_numdp_lacks_say_why(capsys):
    """dp show 3.2 also takes model-branch (multi-task models) and serialization-tree: one line
    saying what they are, exit status 2."""
    for attribute, why in (("model-branch", "multi-task"), ("serialization-tree", "serialized")):
        assert main(["show", str(PTH), "type-map", attribute]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and f"'{attribute}'" in err[0] and why in err[0]
        assert captured.out == ""                               # refused before reading the model


def test_neighbor_counts_do_not_depend_on_which_image_the_file_stores(tmp_path, capsys):
    """Atoms stored one or two cells outside the box (unwrapped trajectories) have the neighbours
    of their wrapped images; dp neighbor-stat 3.2 makes its periodic images without wrapping
    first and misses some (docs/data.md)."""
    wrapped = _water_like(tmp_path / "w", nframes=1)
    coords = np.load(wrapped / "set.000" / "coord.npy").reshape(1, 12, 3)
    shifts = np.random.default_rng(2).integers(-2, 3, (1, 12, 3)) * 5.0
    write_system(tmp_path / "u", coords + shifts, np.diag([5.0] * 3)[None], [0, 1, 1] * 4, ["O", "H"])
    out = {}
    for name in ("w", "u"):
        assert main(["neighbor-stat", "-s", str(tmp_path / name), "-r", "4.5"]) == 0
        out[name] = [line for line in capsys.readouterr().out.splitlines()
                     if line.startswith(("min_nbor_dist", "max_nbor_size"))]
    assert out["u"] == out["w"] and len(out["w"]) == 2
