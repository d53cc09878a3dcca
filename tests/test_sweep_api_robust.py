"""numdp's Python API under real use: one model called from several threads, pickled or forked into
processes, many frames at once, and arrays of every dtype and layout DeePMD-kit's DeepPot takes.

The models are the small DeePMD-kit .dp files of tests/data (12-atom frames of
tests/data/api/dp_reference.npz); DeePMD-kit 3.2's own behaviour for each case is in
docs/python-api.md (Concurrency and processes).
"""
import os
import pickle
import select
import signal
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from numdp.errors import InputError
from numdp.infer import DeepPot
from numdp.model import dp_model
from numdp.neighbor import build_nlist, extend
from numdp.neighbor.threads import fork_unsafe_threads

DATA = Path(__file__).parent / "data"
REF = np.load(DATA / "api" / "dp_reference.npz")
FPARAM_APARAM = DATA / "aparam" / "fparam_aparam.dp"   # numb_fparam 1, numb_aparam 2
FPARAM_DEFAULT = DATA / "fparam" / "fparam_default.dp"  # numb_fparam 3 with a default_fparam


def frames(n, seed=0):
    """n frames (n, 12, 3) Å: the reference frame 0 moved by up to 0.05 Å per coordinate."""
    rng = np.random.default_rng(seed)
    return REF["coord"][:1] + rng.uniform(-0.05, 0.05, (n, 12, 3))


# --- threads --------------------------------------------------------------------------------------

def test_threads_sharing_a_model_with_per_call_parameters():
    """Several threads calling one DeepPot, each frame with its own fparam and aparam, got other
    frames' parameters (energies off by up to 9 eV): each call sets the evaluator's first-layer
    biases and per-atom rows, then evaluates, and another thread's call came in between.  Every
    concurrent result must be bit for bit the serial one (same thread count: the same summation
    order, docs/python-api.md#threads)."""
    dp = DeepPot(FPARAM_APARAM, threads=2)   # 12 atoms in 2 chunks: the model's own pool is used too
    n = 16
    rng = np.random.default_rng(1)
    coords, box, atype = frames(n), REF["box"][0], REF["atype"]
    fparams, aparams = rng.normal(size=(n, 1)), rng.normal(size=(n, 12, 2))

    def one(k):
        return dp.eval(coords[k], box, atype, atomic=True, fparam=fparams[k], aparam=aparams[k])

    serial = [one(k) for k in range(n)]
    for _ in range(3):
        with ThreadPoolExecutor(4) as pool:
            concurrent = list(pool.map(one, range(n)))
        for k in range(n):
            for got, want in zip(concurrent[k], serial[k]):
                np.testing.assert_array_equal(got, want, err_msg=f"frame {k}")


# --- processes ------------------------------------------------------------------------------------

def _fork_and_run(fn, timeout=30.0):
    """Run fn() in a forked child; (exit status or None when the child was still running after
    `timeout` s (then killed), the text fn returned)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: never returns into pytest
        code = 1
        try:
            os.write(w, fn().encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    out, status, deadline = b"", None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([r], [], [], 0.1)[0]:
            out += os.read(r, 65536)
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    while select.select([r], [], [], 0)[0]:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        out += chunk
    os.close(r)
    return status, out.decode()


def test_forked_child_computes_with_the_parents_model():
    """DPModel.compute (given neighbour lists: no Numba parallel kernel) in a child forked after the
    model had evaluated hung for ever: the model's worker-thread pool was the parent's, whose
    threads do not exist in the child.  It must give the parent's numbers."""
    model = dp_model.load_model(FPARAM_DEFAULT, nthreads=2)
    pos, box, typ = REF["coord"][0], REF["box"][0], REF["atype"].astype(np.int32)
    d = model.params.descriptor
    ext = extend(pos, typ, box, d.rcut)
    nl = build_nlist(ext, d.rcut, d.sel, d.ntypes)
    want = model.compute(ext.positions, nl.nlist, typ).atom_energy   # the pool is made here

    def child():
        got = model.compute(ext.positions, nl.nlist, typ).atom_energy
        return "same" if np.array_equal(got, want) else f"differs by {np.abs(got - want).max()}"

    status, text = _fork_and_run(child)
    assert status is not None, "the forked child hung"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and text == "same", (status, text)


def test_forked_child_evaluates_or_gives_one_clear_error():
    """DeepPot.eval in a child forked after a first evaluation: with Numba's GNU OpenMP threading
    layer (the default here without tbb), its first parallel neighbour kernel terminated the
    child (SIGTERM; a multiprocessing 'fork' pool then hangs for ever).  The child must either
    evaluate as the parent (a fork-safe layer), or raise one InputError naming the remedy."""
    dp = DeepPot(FPARAM_DEFAULT, threads=2)
    coords, box, atype = REF["coord"][0], REF["box"][0], REF["atype"]
    want = dp.eval(coords, box, atype)[0]

    def child():
        unsafe = "unsafe " if fork_unsafe_threads() else "safe "
        try:
            got = dp.eval(coords, box, atype)[0]
        except InputError as exc:
            return unsafe + "InputError: " + str(exc)
        return unsafe + ("same" if np.array_equal(got, want) else "differs")

    status, text = _fork_and_run(child)
    assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, text)
    if text.startswith("unsafe "):
        assert text.startswith("unsafe InputError: ") and "'spawn'" in text and "\n" not in text, text
    else:
        assert text == "safe same", text


def test_pickled_and_deep_copied_deeppot_evaluate_as_the_original():
    """A DeepPot crosses to 'spawn' / ProcessPoolExecutor workers by pickle (DeePMD-kit 3.2's
    cannot be pickled nor deep-copied): the copy evaluates bit for bit as the original, with the
    same parameters."""
    import copy

    dp = DeepPot(FPARAM_APARAM, threads=2)
    args = (REF["coord"], REF["box"], REF["atype"])
    kw = {"atomic": True, "fparam": REF["fparam"], "aparam": REF["aparam"]}
    want = dp.eval(*args, **kw)
    for other in (pickle.loads(pickle.dumps(dp)), copy.deepcopy(dp)):
        assert other.model is not dp.model and other.model.nthreads == 2
        for got, w in zip(other.eval(*args, **kw), want):
            np.testing.assert_array_equal(got, w)


# --- big inputs -----------------------------------------------------------------------------------

def _peak_bytes(fn):
    """(peak bytes Python and NumPy allocated while fn() ran, fn's result)."""
    tracemalloc.start()
    try:
        out = fn()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def supercell(pos, box, atype, n=2):
    """The frame (natoms, 3) in box (3, 3) repeated n x n x n: (n^3 natoms, 3), n box, types."""
    shifts = np.array([(i, j, k) for i in range(n) for j in range(n) for k in range(n)]) @ box
    return (pos[None] + shifts[:, None]).reshape(-1, 3), n * box, np.tile(atype, n ** 3)


def memory_growth(few: int = 10, many: int = 300) -> tuple[int, int]:
    """(bytes beyond the outputs that DeepPot.eval of `many` float32 frames of 96 atoms needs
    more than `few` frames, the bytes of a whole float64 copy of the many - few extra frames'
    coordinates and cells: (3 natoms + 9) x 8 each)."""
    dp = DeepPot(FPARAM_DEFAULT, threads=1)
    pos, box, atype = supercell(REF["coord"][0], REF["box"][0], REF["atype"])   # 96 atoms
    one = pos.astype(np.float32).reshape(1, -1)
    cell = box.astype(np.float32).reshape(1, 9)
    dp.eval(one, cell, atype, atomic=True)   # the workspaces' first growth is not per frame

    def extra(n):
        coords, cells = np.repeat(one, n, 0), np.repeat(cell, n, 0)   # the same frame: the same scratch
        peak, out = _peak_bytes(lambda: dp.eval(coords, cells, atype, atomic=True))
        return peak - sum(o.nbytes for o in out)

    return extra(many) - extra(few), (many - few) * (one.size + cell.size) * 8


def test_memory_of_many_frames_is_the_outputs_plus_a_fixed_scratch():
    """DeepPot.eval of float32 coordinates and cells (as np.load gives DeePMD data) copied them
    whole to float64 before the first frame: 24 bytes per atom and 72 per frame beyond the
    outputs (713 kB more for 300 frames of 96 atoms).  Converted frame by frame, the extra frames
    cost nothing: half a whole copy's cost separates the two (test_sweep_review3.py shows the
    check failing on the whole copy)."""
    growth, copy = memory_growth()
    assert growth < copy / 2, (growth, copy)


# --- odd arrays -----------------------------------------------------------------------------------

def test_zero_cell_names_cells_none():
    """An all-zero cell (how some non-periodic data is written; DeePMD-kit 3.2 returns NaN for it)
    was refused as a singular box without saying what to pass: the message must name
    cells=None and the frame."""
    dp = DeepPot(FPARAM_DEFAULT, threads=1)
    cells = REF["box"].reshape(2, 9).copy()
    cells[1] = 0.0
    with pytest.raises(InputError, match=r"^DeepPot.eval: frame 1: the cell is all zeros; pass cells=None "):
        dp.eval(REF["coord"], cells, REF["atype"])


def test_odd_arrays_give_the_same_bits():
    """float32 / list / Fortran-ordered / non-contiguous / read-only inputs and int8 / int32 /
    uint8 types: the same float64 results as C-ordered float64 arrays of the same numbers (the
    float32 ones: of the float32 numbers), as C-contiguous float64 arrays the caller owns."""
    dp = DeepPot(FPARAM_DEFAULT, threads=1)
    c3 = np.ascontiguousarray(REF["coord"], dtype=np.float64)   # (2, 12, 3)
    box, atype = np.ascontiguousarray(REF["box"], dtype=np.float64), REF["atype"]
    want = dp.eval(c3, box, atype)
    ro_c, ro_b = c3.copy(), box.copy()
    ro_c.flags.writeable = ro_b.flags.writeable = False
    cases = {
        "list": (c3.reshape(2, 36).tolist(), box.reshape(2, 9).tolist(), atype.tolist()),
        "fortran": (np.asfortranarray(c3), np.asfortranarray(box), atype),
        "strided": (np.repeat(c3, 2, axis=2)[:, :, ::2], np.repeat(box, 2, axis=2)[:, :, ::2],
                    np.repeat(atype, 2)[::2]),
        "read-only": (ro_c, ro_b, atype),
        "int8 types": (c3, box, atype.astype(np.int8)),
        "uint8 types": (c3, box, atype.astype(np.uint8)),
        "int32 types": (c3, box, atype.astype(np.int32)),
    }
    for name, args in cases.items():
        for got, w in zip(dp.eval(*args), want):
            assert got.dtype == np.float64 and got.flags.c_contiguous and got.flags.writeable, name
            np.testing.assert_array_equal(got, w, err_msg=name)
    c32, b32 = c3.astype(np.float32), box.astype(np.float32)
    for got, w in zip(dp.eval(c32, b32, atype), dp.eval(c32.astype(np.float64), b32.astype(np.float64), atype)):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, w)


def test_outputs_are_not_overwritten_by_the_next_call():
    """The arrays one call returns are the caller's: a second call (another frame) leaves them."""
    dp = DeepPot(FPARAM_DEFAULT, threads=2)
    first = dp.eval(REF["coord"][0], REF["box"][0], REF["atype"], atomic=True)
    kept = [a.copy() for a in first]
    dp.eval(REF["coord"][1], REF["box"][1], REF["atype"], atomic=True)
    model = dp.model
    r = model.evaluate(REF["coord"][0], REF["atype"], REF["box"][0])
    kept_r = [r.forces.copy(), r.virial.copy(), r.atom_energies.copy(), r.atom_virials.copy()]
    model.evaluate(REF["coord"][1], REF["atype"], REF["box"][1])
    d = model.descriptor(REF["coord"][0], REF["atype"], REF["box"][0])
    kept_d = d.copy()
    model.descriptor(REF["coord"][1], REF["atype"], REF["box"][1])
    for got, w in zip(list(first) + [r.forces, r.virial, r.atom_energies, r.atom_virials, d],
                      kept + kept_r + [kept_d]):
        np.testing.assert_array_equal(got, w)


def test_nan_coordinate_is_one_clear_error():
    """A NaN coordinate (DeePMD-kit 3.2 on water: a NaN energy and 411 NaN forces of 576) is one
    InputError naming the frame and the atom."""
    dp = DeepPot(FPARAM_DEFAULT, threads=1)
    coords = REF["coord"].copy()
    coords[1, 4, 2] = np.nan
    with pytest.raises(InputError, match=r"^DeepPot.eval: frame 1: atom 4 has a non-finite position"):
        dp.eval(coords, REF["box"], REF["atype"])
