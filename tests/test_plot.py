"""`numdp plot`: learning curve, thermo log and model deviation figures; kind detection from the
header line; one-line errors; the message without matplotlib."""
import io
import sys
from pathlib import Path

import numpy as np
import pytest

# matplotlib is in the test extra (pyproject.toml), so CI draws every figure here
from numdp.cli import main
from numdp.md.reporters import Console, ThermoReporter
from numdp.plots import Kind, devi_classes, figure_for, read_table
from numdp.train.report import Lcurve, lcurve_columns

PNG = b"\x89PNG\r\n\x1a\n"


def write_lcurve(path, has_valid=True, has_v=True, n=12):
    cols = lcurve_columns(has_valid, has_v)
    lc = Lcurve(path, cols)
    rng = np.random.default_rng(1)
    rows = []
    for k in range(n):
        vals = list(np.exp(-0.2 * k) * rng.uniform(0.5, 2.0, len(cols) - 1)) + [1e-3 * 0.9 ** k]
        lc.row(100 * k, vals)
        rows.append(vals)
    lc.close()
    return cols, np.array(rows)


def write_thermo_log(path):
    """A numdp run log: text lines, a thermo block, more text, a resumed block (as --restart
    appends), then the timing summary."""
    class Snap:
        def __init__(self, step):
            self.step, self.time = step, step * 0.0005
            self.temp, self.pe, self.ke = 300 + step, -100.0 - step, 7.0 + 0.1 * step
            self.etotal, self.press, self.vol = self.pe + self.ke, 10.0 * step, 1000.0

    for resume, steps in ((False, range(0, 30, 5)), (True, range(30, 50, 5))):
        console = Console(path, resume=resume, screen=io.StringIO())
        console.line("numdp run md.toml: 192 atoms O 64, H 128")
        th = ThermoReporter(5, console)
        th.start()
        for s in steps:
            th.report(Snap(s))
        console.line("Loop time of 4.301 s for 40 steps with 192 atoms (2 threads)")
        console.close()
    return np.arange(0, 50, 5)


def write_model_devi(path, n=200, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.lognormal(-2.5, 0.6, n)
    rows = np.column_stack([np.arange(n) * 10, f * 0.1, f * 0.05, f * 0.08, f, f * 0.2, f * 0.5])
    np.savetxt(path, rows, fmt=["%12d"] + ["%18.6e"] * 6,
               header="step max_devi_v min_devi_v avg_devi_v max_devi_f min_devi_f avg_devi_f")
    return rows


def test_lcurve_figure(tmp_path, capsys):
    f = tmp_path / "lcurve.out"
    cols, rows = write_lcurve(f)
    t = read_table(f)
    assert t.kind is Kind.LCURVE and t.names == ["step", *cols]
    fig = figure_for(t)
    axes = fig.get_axes()
    assert len(axes) == 5  # loss, energy, force, virial, lr
    assert all(ax.get_yscale() == "log" for ax in axes)
    energy = axes[1]
    assert [ln.get_label() for ln in energy.get_lines()] == ["train", "validation"]
    np.testing.assert_array_equal(energy.get_lines()[0].get_xdata(), 100 * np.arange(12))
    # lcurve.out holds 7 significant digits (%13.6e): relative rounding <= 5e-7
    np.testing.assert_allclose(energy.get_lines()[0].get_ydata(), rows[:, cols.index("rmse_e_trn")], rtol=1e-6)
    np.testing.assert_allclose(axes[4].get_lines()[0].get_ydata(), rows[:, -1], rtol=1e-6)
    assert main(["plot", str(f)]) == 0
    assert (tmp_path / "lcurve.png").read_bytes()[:8] == PNG
    # without validation data and virial: train only, three RMSE panels
    cols, _ = write_lcurve(tmp_path / "l2.out", has_valid=False, has_v=False)
    axes = figure_for(read_table(tmp_path / "l2.out")).get_axes()
    assert len(axes) == 4 and [ln.get_label() for ln in axes[2].get_lines()] == ["train"]


def test_lcurve_figure_of_mae_columns(tmp_path):
    """A learning curve of loss_func "mae" (mae_* columns, then rmse): one panel per quantity,
    drawn from the mae columns."""
    f = tmp_path / "lcurve.out"
    cols = lcurve_columns(True, True, mae=True)
    assert cols[:2] == ["mae_e_val", "mae_e_trn"] and cols[-3:] == ["rmse_val", "rmse_trn", "lr"]
    rows = np.column_stack([np.arange(6) * 10] + [np.linspace(1.0, 0.1, 6) * (k + 1) for k in range(len(cols))])
    lc = Lcurve(f, cols)
    for r in rows:
        lc.row(int(r[0]), list(r[1:]))
    lc.close()
    axes = figure_for(read_table(f)).get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["loss (√loss)", "energy MAE (eV/atom)", "force MAE (eV/Å)",
                                                "virial MAE (eV/atom)", "learning rate"]
    np.testing.assert_allclose(axes[2].get_lines()[0].get_ydata(), rows[:, 1 + cols.index("mae_f_trn")], rtol=1e-6)


def test_deepmd_kit_lcurve(oracle_dir, tmp_path):
    """DeePMD-kit's own lcurve.out (two comment lines) reads as a learning curve."""
    src = oracle_dir / "training" / "water_2k_seed1.lcurve.out"
    t = read_table(src)
    assert t.kind is Kind.LCURVE and t.names[:3] == ["step", "rmse_val", "rmse_trn"]
    assert t.data.shape == (len(np.loadtxt(src, ndmin=2)), len(t.names))
    assert main(["plot", str(src), "-o", str(tmp_path / "w.png")]) == 0
    assert (tmp_path / "w.png").read_bytes()[:8] == PNG


def test_thermo_figure(tmp_path):
    log = tmp_path / "log.txt"
    steps = write_thermo_log(log)
    t = read_table(log)
    assert t.kind is Kind.THERMO
    assert t.names == ["step", "time", "temp", "pe", "ke", "etotal", "press", "vol"]
    np.testing.assert_array_equal(t.column("step"), steps)
    fig = figure_for(t)
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["temp (K)", "pe (eV)", "ke (eV)", "etotal (eV)",
                                                 "press (bar)", "vol (Å³)"]
    assert axes[-1].get_xlabel() == "time (ps)"
    line = axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), steps * 0.0005)
    np.testing.assert_allclose(line.get_ydata(), 300 + steps)
    out = tmp_path / "thermo.png"
    assert main(["plot", str(log), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG


def test_minimization_log_figure(tmp_path):
    """A minimization's log (step pe fnorm fmax): a thermo figure against step, the force norms on
    a log scale."""
    from numdp.md.reporters import MinimizeThermoReporter

    class Snap:
        def __init__(self, step):
            self.step, self.pe = step, -100.0 - 0.1 * step
            self.state = type("S", (), {"forces": np.full((4, 3), 0.5 * 0.8 ** step)})()
            self.world = None

    log = tmp_path / "log.txt"
    console = Console(log, resume=False, screen=io.StringIO())
    th = MinimizeThermoReporter(2, console)
    th.start()
    for s in range(0, 20, 2):
        th.report(Snap(s))
    console.line("Minimization stats:")
    console.close()
    t = read_table(log)
    assert t.kind is Kind.THERMO and t.names == ["step", "pe", "fnorm", "fmax"]
    np.testing.assert_allclose(t.column("fmax"), 0.5 * 0.8 ** np.arange(0, 20, 2), rtol=1e-5)
    axes = figure_for(t).get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["pe (eV)", "fnorm (eV/Å)", "fmax (eV/Å)"]
    assert [ax.get_yscale() for ax in axes] == ["linear", "log", "log"]
    assert axes[-1].get_xlabel() == "step"
    assert main(["plot", str(log), "-o", str(tmp_path / "min.png")]) == 0


def test_model_devi_with_per_atom_columns(tmp_path, capsys):
    """A file written with --atomic (header ending in atm_devi_f(N), N more numbers per row: numdp
    model-devi's, LAMMPS' and DP-GEN's) failed with "expected 9 numbers" and echoed the whole
    row; the named columns are read and the per-atom ones passed over."""
    from numdp.io.model_devi_file import write_block
    from numdp.model.deviation import FrameDeviation

    rng = np.random.default_rng(2)
    rows = [(10 * k, FrameDeviation(*rng.uniform(0.01, 0.2, 7), rng.uniform(0.0, 0.1, 50))) for k in range(6)]
    path = tmp_path / "model_devi.out"
    with open(path, "w") as fp:
        write_block(fp, rows[:3], energy=True, atomic=True, title="sys0")
        write_block(fp, rows[3:], energy=True, atomic=True, title="sys1")
    t = read_table(path)
    assert t.kind is Kind.MODEL_DEVI and t.names[-1] == "devi_e" and t.data.shape == (6, 8)
    # %18.6e in the file: 7 significant digits
    np.testing.assert_allclose(t.column("max_devi_f"), [d.max_devi_f for _, d in rows], rtol=1e-6)
    assert main(["plot", str(path)]) == 0
    # a row with too few numbers is still an error, on one short line
    with open(path, "a") as fp:
        fp.write("  60 " + " 1.0" * 3 + "\n")
    assert main(["plot", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "and one per atom" in err[0] and len(err[0]) < 400


def test_thermo_log_as_a_run_and_its_restart_write_it(tmp_path):
    """The compile notice falls after the first row of a first run, and a restart repeats its
    checkpoint's step (here 20, after the interrupted run had logged up to 25): every step once,
    the resumed block's rows replacing the earlier ones from its first step on."""
    class Snap:
        def __init__(self, step, resumed=False):
            self.step, self.time = step, step * 0.0005
            self.temp, self.pe, self.ke = 300 + step + (1000 if resumed else 0), -100.0 - step, 7.0
            self.etotal, self.press, self.vol = self.pe + self.ke, 10.0 * step, 1000.0

    log = tmp_path / "log.txt"
    for resume, steps in ((False, range(0, 30, 5)), (True, range(20, 45, 5))):
        console = Console(log, resume=resume, screen=io.StringIO())
        th = ThermoReporter(5, console)
        th.start()
        for s in steps:
            th.report(Snap(s, resume))
            if s == 0:
                console.line("kernels compiled; set-up and first step took 25.3 s (not counted in the ETA)")
        console.line("Loop time of 4.301 s for 40 steps with 192 atoms (2 threads)")
        console.close()
    t = read_table(log)
    np.testing.assert_array_equal(t.column("step"), np.arange(0, 45, 5))
    np.testing.assert_array_equal(t.column("temp"), [300, 305, 310, 315, 1320, 1325, 1330, 1335, 1340])


def test_model_devi_figure(tmp_path):
    f = tmp_path / "model_devi.out"
    rows = write_model_devi(f)
    t = read_table(f)
    assert t.kind is Kind.MODEL_DEVI
    fig = figure_for(t, 0.05, 0.15)
    hist, series = fig.get_axes()
    assert sum(p.get_height() for p in hist.patches) == len(rows)  # every frame in the histogram
    f_col = t.column("max_devi_f")
    np.testing.assert_array_equal(series.get_lines()[0].get_ydata(), f_col)
    # the file holds 7 significant digits (%.6e): relative rounding <= 5e-7
    np.testing.assert_allclose(f_col, rows[:, 4], rtol=1e-6)
    levels = sorted(ln.get_ydata()[0] for ln in series.get_lines() if ln.get_label().startswith("trust"))
    assert levels == [0.05, 0.15]
    vlines = sorted(ln.get_xdata()[0] for ln in hist.get_lines())
    assert vlines == [0.05, 0.15]
    acc, cand, fail = devi_classes(f_col, 0.05, 0.15)
    assert (acc, cand, fail) == (np.sum(f_col < 0.05), np.sum((f_col >= 0.05) & (f_col < 0.15)),
                                 np.sum(f_col >= 0.15))
    assert min(acc, cand, fail) > 0  # the levels split the data: the classes are exercised
    assert f"failed {100 * fail / len(rows):.1f}%" in fig._suptitle.get_text()
    assert main(["plot", str(f), "--trust-lo", "0.05", "--trust-hi", "0.15"]) == 0
    assert (tmp_path / "model_devi.png").read_bytes()[:8] == PNG


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n1 2 3\n")
    devi = tmp_path / "model_devi.out"
    write_model_devi(devi, n=5)
    broken = tmp_path / "broken.out"
    broken.write_text("# step max_devi_v min_devi_v avg_devi_v max_devi_f min_devi_f avg_devi_f\n1 2 3\n")
    empty = tmp_path / "empty.out"
    empty.write_text("#  step  rmse_trn  lr\n")
    lc = tmp_path / "lcurve.out"
    write_lcurve(lc)
    cases = [
        ([str(tmp_path / "missing.out")], "not found"),
        ([str(bad)], "not a learning curve"),
        ([str(broken)], "broken.out:2: expected 7 numbers"),
        ([str(empty)], "no rows"),
        # numdp train's own log (its progress lines start with "step" and name "lr"): not a curve
        ([str(Path(__file__).parents[1] / "inputs" / "cu" / "train.log")],
         "train.log:4: numdp train's progress log, not a column file: plot its learning curve"),
        ([str(lc), "--trust-lo", "0.1"], "apply to model deviation files"),
        ([str(devi), "--trust-lo", "0.3", "--trust-hi", "0.1"], "above --trust-hi"),
        ([str(devi), "-o", str(tmp_path / "x.pdf")], "PNG"),
        ([str(devi), "-o", str(tmp_path / "nodir" / "x.png")], "cannot write"),
    ]
    for argv, fragment in cases:
        assert main(["plot", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], (argv, err)


def test_without_matplotlib(tmp_path, monkeypatch, capsys):
    f = tmp_path / "model_devi.out"
    write_model_devi(f, n=5)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["plot", str(f)]) == 2
    assert capsys.readouterr().err.strip() == "numdp plot needs matplotlib: pip install 'numdp[plot]'"
    assert not (tmp_path / "model_devi.png").exists()


@pytest.mark.parametrize("error, status", [(OSError(28, "No space left on device"), 2), (KeyboardInterrupt(), 130)])
def test_existing_figure_is_kept_and_back_when_the_write_fails(tmp_path, monkeypatch, capsys, error, status):
    """A second figure keeps the first as #NAME.1#; a write that fails (disk full, Ctrl-C) leaves
    the earlier figure under its name byte for byte and no partial file."""
    import matplotlib.figure

    f = tmp_path / "model_devi.out"
    write_model_devi(f, n=5)
    png = tmp_path / "model_devi.png"
    assert main(["plot", str(f)]) == 0
    first = png.read_bytes()
    assert main(["plot", str(f), "--dpi", "60"]) == 0
    assert f"backed up the existing {png} to #model_devi.png.1#" in capsys.readouterr().out
    assert (tmp_path / "#model_devi.png.1#").read_bytes() == first and png.read_bytes() != first
    (tmp_path / "#model_devi.png.1#").unlink()
    second = png.read_bytes()

    def failing(self, fname, *args, **kwargs):
        with open(fname, "wb") as fp:
            fp.write(b"\x89PNG half")
        raise error

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", failing)
    assert main(["plot", str(f)]) == status
    assert png.read_bytes() == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_devi.out", "model_devi.png"]
