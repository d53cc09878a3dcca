"""Statements of the user docs that tests/test_docs.py does not check, held against the code: what
a page says is accepted or refused, printed once or N times, read or not, is what the command does.
Each test runs the code on a tiny input (no MD step, no model evaluation beyond loading) and reads
the page's one sentence or table row that makes the claim. Fast: about a second in all."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"```.*?```", re.S)


def table_row(page: str, first_cell: str) -> str:
    """The whole line of the table row of docs/`page` whose first cell is `first_cell`."""
    rows = [line for line in (DOCS / page).read_text().splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"docs/{page}: {len(rows)} rows for {first_cell}"
    return rows[0]


def test_every_table_row_is_in_a_table():
    """A Markdown table row renders as a table only in a block of `|` lines whose second line is the
    `|---|` separator: a row cut off from its table by a blank line shows as a line of pipes."""
    bad = []
    for page in PAGES:
        lines = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), page.read_text()).splitlines()
        k = 0
        while k < len(lines):
            if not lines[k].startswith("|"):
                k += 1
                continue
            start = k
            while k < len(lines) and lines[k].startswith("|"):
                k += 1
            if k - start < 2 or not re.match(r"^\|\s*:?-", lines[start + 1]):
                bad.append(f"{page.name}:{start + 1}: {lines[start][:60]!r}")
    assert not bad, "table rows outside a table (no header and |---| line): " + "; ".join(bad)


def test_minimization_takes_thermo_columns_as_md_md_says(tmp_path):
    """A [minimize] input with [output] thermo_columns is accepted (its thermo lines then have those
    columns), and docs/md.md's [output] table does not call the key refused for a minimization."""
    from numdp.config import load_run_settings

    path = tmp_path / "min.toml"
    path.write_text('[model]\nfile = "model.h5"\n[system]\nfile = "start.xyz"\n[minimize]\nsteps = 3\n'
                    '[output]\nthermo_columns = ["step", "pe", "temp"]\n')
    assert load_run_settings(path).output.thermo_columns == ("step", "pe", "temp")
    row = table_row("md.md", "`thermo_columns`")
    assert "not for a minimization" not in row, "docs/md.md says a minimization refuses thermo_columns"
    assert "step pe fnorm fmax" in row, "docs/md.md's thermo_columns row: name a minimization's default"


def test_compress_without_a_model_reads_dp_compress_default_as_documented(tmp_path, monkeypatch, capsys):
    """`numdp compress` with neither MODEL nor -i reads dp compress's default input frozen_model.pb
    (not "required"), as docs/compression.md's option table and docs/from-deepmd-kit.md say; the
    table's MODEL row names every model format the command reads (the TensorFlow .pb too)."""
    from numdp.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["compress"]) == 2
    assert "frozen_model.pb: model file not found" in capsys.readouterr().err
    row = table_row("compression.md", "`MODEL`, `-i`, `--input`")
    assert "required" not in row and "`frozen_model.pb`" in row, row
    assert "`.pb`" in row, "docs/compression.md: numdp compress reads TensorFlow .pb models"


def test_convert_and_show_read_tensorflow_graphs_as_model_files_md_says(tmp_path, capsys):
    """`numdp convert` takes a TensorFlow .pb as IN and `numdp show` shows one; docs/model-files.md's
    lists of what each reads name `.pb`."""
    from numdp.cli import main

    graph = ROOT / "tests" / "data" / "tensorflow" / "tf_one_side_f64.pb"
    assert main(["convert", str(graph), str(tmp_path / "m.h5")]) == 0
    assert main(["show", str(graph), "type-map"]) == 0
    assert "The type_map is ['O', 'H']" in capsys.readouterr().out
    text = (DOCS / "model-files.md").read_text()
    convert_in = re.search(r"IN may be any format numdp reads \(([^)]*\))", text).group(1)
    assert "`.pb`" in convert_in, f"docs/model-files.md: numdp convert's IN list lacks .pb: {convert_in!r}"
    show_list = re.search(r"Any (`[^:]*) model numdp reads:", text).group(1)
    assert "`.pb`" in show_list, f"docs/model-files.md: numdp show's list lacks .pb: {show_list!r}"


def test_single_process_command_under_mpi_prints_once_as_mpi_md_says(monkeypatch, capsys):
    """`numdp show` started on 2 MPI ranks: rank 0 prints the one line and exits 2, rank 1 exits 2
    without a word, as docs/mpi.md says (not "N ranks print it N times")."""
    from numdp.cli import main

    model = str(ROOT / "inputs" / "water" / "model.h5")
    lines = []
    for rank in (0, 1):
        monkeypatch.setenv("PMI_SIZE", "2")
        monkeypatch.setenv("PMI_RANK", str(rank))
        assert main(["show", model, "type-map"]) == 2
        err = capsys.readouterr().err
        lines.append([line for line in err.splitlines() if line.strip()])
    assert len(lines[0]) == 1 and "started on 2 MPI ranks" in lines[0][0], lines[0]
    assert lines[1] == [], lines[1]
    text = " ".join((DOCS / "mpi.md").read_text().split())
    assert "N ranks print it N times" not in text
    assert "rank 0 prints it, the other ranks exit quietly" in text


def test_readme_names_numdp_runs_default_minimizer():
    """README.md's feature row names FIRE as `numdp run`'s default [minimize] style (the
    validator's) and cg as LAMMPS' default, not cg as numdp's."""
    from numdp.config import run_settings

    data = {"model": {"file": "m.h5"}, "system": {"file": "s.xyz"}, "minimize": {"steps": 1}}
    assert run_settings(Path("in.toml"), "", data, Path(".")).minimize.style == "fire"
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "cg, its default" not in readme
    assert "cg, LAMMPS' default, sd and FIRE, `numdp run`'s default" in readme
