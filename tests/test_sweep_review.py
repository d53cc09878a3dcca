"""Defects found by a review of the sweep commits e75f362..88a12af (each test failed before its fix).
"""
from __future__ import annotations

import os

from numdp.cli import main as cli_main

from test_train_run import INPUT, data_dir  # noqa: F401  (the fixture)


def test_a_toml_training_run_ignores_dp_backend(tmp_path, data_dir, monkeypatch, capsys):  # noqa: F811
    """DP_BACKEND picks dp train's checkpoint names for a DeePMD-kit input.json only; a TOML
    input leaves none, so a DP_BACKEND numdp does not know (a cluster module's, say) must not stop
    `numdp train input.toml` (it did since e557501: 'DP_BACKEND ...: not a DeePMD-kit backend')."""
    os.symlink(data_dir, tmp_path / "data")
    (tmp_path / "input.toml").write_text(INPUT.format(tos="true", steps=1))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DP_BACKEND", "torch")   # not one of dp's names (pytorch, pt)
    status = cli_main(["train", "input.toml", "--threads", "1"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "DP_BACKEND" not in err
    assert (tmp_path / "model.ckpt.h5").is_file()
    # a TOML run leaves none of dp's checkpoint names
    assert not any((tmp_path / n).exists() for n in ("checkpoint", "model.ckpt.index", "model.ckpt.pt"))
