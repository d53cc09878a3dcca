"""numdp.io.atomic: a failure in the middle of a write leaves the previous file intact and no
temporary behind, for the helper itself and for its three users (model file, training checkpoint,
MD checkpoint)."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

import numdp.io.dp_write
import numdp.io.h5_model
import numdp.io.h5md
from numdp.errors import InputError
from numdp.io import atomic
from numdp.io.atomic import atomic_h5, atomic_path
from numdp.io.h5md import read_checkpoint as read_md_checkpoint
from numdp.io.h5md import write_checkpoint as write_md_checkpoint
from numdp.io.model_file import read_model, write_model
from numdp.system import State
from numdp.train.checkpoint import Checkpoint
from numdp.train.checkpoint import read_checkpoint as read_train_checkpoint
from numdp.train.checkpoint import write_checkpoint as write_train_checkpoint
from randmodel import random_params


class Injected(Exception):
    pass


def only(tmp_path, name):
    """The directory holds exactly `name` (no temporaries)."""
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name != target.name
        tmp.write_text("new")
        assert target.read_text() == "old"  # not replaced before the block ends
    assert target.read_text() == "new"
    mode = stat.S_IMODE(os.stat(target).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    for exc in (Injected, KeyboardInterrupt):
        with pytest.raises(exc):
            with atomic_path(target) as tmp:
                tmp.write_text("half")
                raise exc
        assert target.read_text() == "new"
        only(tmp_path, "out.txt")
    assert not atomic.PENDING


def test_two_writers_of_one_file_use_distinct_temporaries(tmp_path):
    target = tmp_path / "out.h5"
    with atomic_h5(target) as a, atomic_h5(target) as b:
        assert a.filename != b.filename
        a["x"] = 1.0
        b["x"] = 2.0
    only(tmp_path, "out.h5")


def test_pending_temporaries_are_removed_on_abort(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(Injected):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            assert str(tmp) in atomic.PENDING
            atomic.remove_pending()  # what numdp.signals does before os._exit
            assert not tmp.exists()
            raise Injected
    assert not target.exists() and not list(tmp_path.iterdir())


def test_unwritable_directory_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match="cannot write checkpoint .directory"):
        with atomic_path(tmp_path / "no" / "ck.h5", "checkpoint"):
            pass


def _md_state(step):
    rng = np.random.default_rng(step)
    n = 4
    return State(positions=rng.normal(size=(n, 3)), velocities=rng.normal(size=(n, 3)),
                 types=np.zeros(n, np.int32), masses=np.ones(n), box=np.eye(3) * 10.0, type_map=["A"],
                 ids=np.arange(n, dtype=np.int64), step=step, forces=np.zeros((n, 3)), virial=np.zeros((3, 3)),
                 potential_energy=0.0)


def _train_ck(step, theta=np.zeros(3)):
    return Checkpoint(step=step, theta=theta, adam_m=np.zeros(3), adam_v=np.zeros(3), adam_t=step, sel=[2],
                      davg=np.zeros((1, 2, 4)), dstd=np.ones((1, 2, 4)), out_bias=np.zeros(1), s_range=None,
                      min_nbor_dist=None, sampler={}, valid_sampler=None, input_text="", elapsed=0.0)


def _fail(*args, **kwargs):
    raise Injected("injected failure in the middle of the write")


def test_md_checkpoint_failure_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "ck.h5"
    write_md_checkpoint(path, _md_state(5), {})
    monkeypatch.setattr(numdp.io.h5md, "to_arrays", _fail)  # after the frame, before /numdp/state
    with pytest.raises(Injected):
        write_md_checkpoint(path, _md_state(9), {})
    assert read_md_checkpoint(path).step == 5
    only(tmp_path, "ck.h5")


def test_train_checkpoint_failure_keeps_the_previous_one(tmp_path):
    path = tmp_path / "model.ckpt.h5"
    write_train_checkpoint(_train_ck(3), path)
    with pytest.raises(Exception):
        write_train_checkpoint(_train_ck(7, theta=object()), path)  # attributes written, theta fails
    assert read_train_checkpoint(path).step == 3
    only(tmp_path, "model.ckpt.h5")


@pytest.mark.parametrize("suffix", [".h5", ".dp"])
def test_model_file_failure_keeps_the_previous_one(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"model{suffix}"
    old = random_params(seed=1)
    write_model(old, path)
    if suffix == ".h5":
        monkeypatch.setattr(numdp.io.h5_model, "_write_net", _fail)
    else:
        monkeypatch.setattr(numdp.io.dp_write, "_store_arrays", _fail)
    with pytest.raises(Injected):
        write_model(random_params(seed=2), path)
    back = read_model(path)
    assert np.array_equal(back.out_bias, old.out_bias)
    only(tmp_path, path.name)
