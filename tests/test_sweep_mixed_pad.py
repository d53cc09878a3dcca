"""Mixed-type systems padded with virtual atoms (type -1 in real_atom_types.npy, dpdata's
``atom_numb_pad``): every command that reads systems takes each frame's real atoms only, as
DeePMD-kit 3.2 does.  tests/data/mixed_pad holds a 3-frame, 12-slot water system with 0, 3 (at the
end, at the origin as dpdata pads) and 3 (inside, next to real atoms) virtual atoms, and dp 3.2's
figures on it (tools/make_mixed_pad_fixtures.py)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from numdp.cli import main
from numdp.errors import InputError
from numdp.io.npy_system import load_system
from tests_util import write_system

DATA = Path(__file__).parent / "data" / "mixed_pad"
MODELS = Path(__file__).parent / "data" / "dp32_models"
MODEL = str(MODELS / "gelu_relu.dp")
DP = json.loads((DATA / "dp.json").read_text())
# dp prints its figures with 7 significant digits ("%e"): within half a unit of the last one
PRINTED = 5e-7


@pytest.fixture
def padded(tmp_path):
    return Path(shutil.copytree(DATA / "sys", tmp_path / "padded"))


def stripped(padded_dir, root):
    """Each frame of the padded system without its virtual atoms, as a standard system root/fK."""
    s = load_system(padded_dir)
    out = []
    for f in range(s.nframes):
        keep = s.frame_types[f] >= 0
        out.append(write_system(root / f"f{f}", s.coords[f][keep][None], s.boxes[f][None],
                                s.frame_types[f][keep], s.type_map, energy=s.energy[f:f + 1],
                                force=s.forces[f][keep][None], virial=s.virial[f][None]))
    return out


def test_read_keeps_virtual_atoms_as_minus_one(padded):
    s = load_system(padded)
    assert s.has_virtual
    t = s.frame_model_types(["H", "O"])
    np.testing.assert_array_equal(t < 0, s.frame_types < 0)
    np.testing.assert_array_equal(t[s.frame_types >= 0], 1 - s.frame_types[s.frame_types >= 0])
    with pytest.raises(InputError, match=r"real_atom_types.npy: atom \d+ is 'O', an element not in"):
        s.frame_model_types(["H"])


def test_numdp_test_as_dp(padded, tmp_path):
    """dp test 3.2 evaluates a frame without its virtual atoms, gives them zero forces, and divides
    the per-atom figures by the padded count (12), its force figures over all 12 slots."""
    out = tmp_path / "r.json"
    assert main(["test", "-m", MODEL, "-s", str(padded), "--json", str(out)]) == 0
    fig = json.loads(out.read_text())["overall"]
    ref = DP["test"]
    for mine, theirs in (("rmse_energy", "rmse_e"), ("mae_energy", "mae_e"), ("rmse_force", "rmse_f"),
                         ("mae_force", "mae_f"), ("rmse_virial", "rmse_v"), ("mae_virial", "mae_v"),
                         ("rmse_energy_total", "rmse_e_total"), ("mae_energy_total", "mae_e_total")):
        assert fig[mine] == pytest.approx(1000.0 * ref[theirs], rel=PRINTED, abs=0), mine


def test_model_devi_as_dp(padded, tmp_path):
    """Virtual atoms count as atoms of zero force deviation (dp model-devi 3.2's min and mean)."""
    out = tmp_path / "devi.out"
    assert main(["model-devi", "-m", MODEL, str(MODELS / "softplus_sigmoid.dp"), "-s", str(padded),
                 "-o", str(out)]) == 0
    np.testing.assert_allclose(np.loadtxt(out), np.array(DP["model_devi"]), rtol=2 * PRINTED, atol=0)


def test_change_bias_as_dp(padded, tmp_path, capsys):
    assert main(["change-bias", MODEL, "-s", str(padded), "-o", str(tmp_path / "b.dp")]) == 0
    from numdp.io.model_file import read_model

    # dp logs the bias with 8 decimals
    np.testing.assert_allclose(read_model(tmp_path / "b.dp").out_bias.reshape(-1), DP["change_bias"],
                               rtol=0, atol=5e-9 + 1e-12 * 200)


def test_eval_desc_real_rows_as_dp(padded, tmp_path):
    """The real atoms' rows equal dp eval-desc's; a virtual atom's row is zeros (dp's is an
    isolated atom's)."""
    assert main(["eval-desc", "-m", MODEL, "-s", str(padded), "-o", str(tmp_path / "d")]) == 0
    desc = np.load(tmp_path / "d" / "padded.npy")
    real = load_system(padded).frame_types >= 0
    ref = np.load(DATA / "desc.npy")
    # float64 descriptors of O(1) from a few dozen neighbours: round-off ~1e-14
    np.testing.assert_allclose(desc[real], ref[real], rtol=0, atol=1e-12)
    assert not desc[~real].any()


def test_neighbor_stat_leaves_virtual_atoms_out(padded, tmp_path, capsys):
    """The same figures as the frames without their virtual atoms (dp 3.2 stops on this data:
    dpdata's padding puts them all at the origin, 'overlapping')."""
    plain = stripped(padded, tmp_path / "plain")
    lines = []
    for args in (["-s", str(padded)], ["-s", *map(str, plain)]):
        for one in ([], ["--one-type"]):
            capsys.readouterr()
            assert main(["neighbor-stat", *args, "-r", "3.5", "-t", "O", "H", *one]) == 0
            lines.append([ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")])
    assert lines[0] == lines[2] and lines[1] == lines[3]


def test_trainer_takes_real_atoms_only(padded, tmp_path):
    """Frames, labels, neighbour counts, davg/dstd and the energy bias of the padded system equal
    those of its frames without the virtual atoms."""
    from numdp.train.config import BatchSize
    from numdp.train.data import FrameCache, load_dataset
    from numdp.train.stats import energy_bias, env_stats, max_neighbour_counts

    plain = stripped(padded, tmp_path / "plain")
    (mixed,) = load_dataset([padded], ["O", "H"], BatchSize(fixed=3))
    std = load_dataset(plain, ["O", "H"], BatchSize(fixed=1))
    cache, ref = FrameCache([mixed], 3.5, [12, 24], 2), FrameCache(std, 3.5, [12, 24], 2)
    for f in range(3):
        a, b = cache.frame(0, f), ref.frame(f, 0)
        np.testing.assert_array_equal(a.types, b.types)
        np.testing.assert_array_equal(a.nlist, b.nlist)
        np.testing.assert_array_equal(a.ext_pos, b.ext_pos)
        la, lb = mixed.labels(f), std[f].labels(0)
        np.testing.assert_array_equal(la.forces, lb.forces)
        assert la.energy == lb.energy
    np.testing.assert_array_equal(max_neighbour_counts([mixed], 3.5, 2), max_neighbour_counts(std, 3.5, 2))
    frames = [np.arange(3)]
    # the same least squares on the same counts and energies: equal to its round-off
    np.testing.assert_allclose(energy_bias([mixed], frames, 2), energy_bias(std, [np.arange(1)] * 3, 2),
                               rtol=1e-12, atol=0)
    ma, sa = env_stats(cache, frames, 2, [12, 24], 3.5, 0.5)
    mb, sb = env_stats(ref, [np.arange(1)] * 3, 2, [12, 24], 3.5, 0.5)
    np.testing.assert_allclose(ma, mb, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sa, sb, rtol=1e-12, atol=1e-15)


def test_start_structure_leaves_virtual_atoms_out(padded):
    from numdp.io.structure import read_npy_frame

    s = load_system(padded)
    st = read_npy_frame(padded, 2)
    keep = s.frame_types[2] >= 0
    assert st.elements == [s.type_map[t] for t in s.frame_types[2][keep]]
    np.testing.assert_array_equal(st.positions, s.coords[2][keep])
    types = s.frame_types.copy()
    types[0] = -1
    np.save(padded / "set.000" / "real_atom_types.npy", types)
    with pytest.raises(InputError, match=r"padded: frame 0 has only virtual atoms"):
        read_npy_frame(padded, 0)
