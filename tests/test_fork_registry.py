"""numdp.neighbor.threads.free_at_fork, the one registry of the locks a forked child frees
(tests/test_sweep_runtime.py forks with them held): it must not keep its owners alive."""
import gc
import weakref
from pathlib import Path

from numdp.model.dp_model import load_model

FPARAM_MODEL = Path(__file__).parent / "data" / "fparam" / "fparam_default.dp"   # numb_fparam 3: a model with a lock


def test_registered_model_and_evaluator_are_freed_with_their_last_reference():
    """A model with a lock and its evaluator (both registered for freeing at a fork) are
    collected once the caller drops them: the registry holds them by weak references."""
    model = load_model(str(FPARAM_MODEL))
    assert model._lock is not None
    refs = weakref.ref(model), weakref.ref(model._ev)
    del model
    gc.collect()
    assert [r() for r in refs] == [None, None]
