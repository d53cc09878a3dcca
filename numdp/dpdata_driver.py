"""numdp as a dpdata driver: ``system.predict("model.dp", driver="numdp")``.

dpdata (optional, ``pip install dpdata``) imports this module itself, through the
``dpdata.plugins`` entry point that numdp's pyproject.toml declares, whenever ``import dpdata``
runs in an environment where numdp is installed; the user imports nothing from numdp.  numdp
itself never imports this module, so numdp does not need dpdata.

    import dpdata
    labeled = dpdata.System("POSCAR", fmt="vasp/poscar").predict("model.dp", driver="numdp")
    labeled.to("deepmd/npy", "labeled")

The driver answers to "numdp" only.  dpdata's names "dp", "deepmd" and "deepmd-kit" belong to
DeePMD-kit's own driver; dpdata registers plugins by overwriting, and entry-point plugins load
after its built-in ones, so taking "dp" would silently replace DeePMD-kit's driver (and change
what ``predict(model)`` without ``driver=`` means) for everyone with both packages installed.

Every frame is evaluated by ``DPModel.evaluate`` (what ``numdp.load_model`` returns), frame after
frame.  See docs/dpdata.md.
"""
from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING

import numpy as np
from dpdata.driver import Driver

from .errors import InputError
from .io.type_map import table_types

if TYPE_CHECKING:   # numdp.model loads Numba: not at `import dpdata` time
    from .infer import DeepPot
    from .model.dp_model import DPModel

__all__ = ["NumdpDriver"]


@Driver.register("numdp")
class NumdpDriver(Driver):
    """dpdata driver labelling systems with a numdp or DeePMD-kit se_e2_a energy model.

    model: path of anything ``numdp.load_model`` reads (numdp .h5, DeePMD-kit .dp, .pb, .pt/.pth), a
    model it returned, or a ``numdp.DeepPot`` (for the last two, precision, threads and device are
    the model's own and must be left at their defaults); ``dp`` is another name for it, the one
    DeePMD-kit's driver uses (hybrid configurations ``{"type": "numdp", "dp": "model.pb"}``).
    precision: "double" | "mix32" | "mix16"; threads: worker threads (None: numdp's default,
    numdp.parallel.threads.default_threads); device: "cpu" | "cuda" (docs/gpu.md).
    Mistakes are numdp.errors.InputError.
    """

    def __init__(self, model: str | PathLike | DPModel | DeepPot | None = None, *,
                 dp: str | PathLike | DPModel | DeepPot | None = None, precision: str = "double",
                 threads: int | None = None, device: str = "cpu") -> None:
        if (model is None) == (dp is None):
            raise InputError("numdp driver: give the model once, as `model` or as `dp` (DeePMD-kit's "
                             "driver's name for it), " + ("not both" if dp is not None else "got none"))
        from .model.dp_model import model_of

        self.model = model_of(model if dp is None else dp, "numdp driver", precision, threads, device)

    def model_types(self, data: dict) -> np.ndarray:
        """(natoms,) int32 index into the model's type_map of each atom, matched by element name.

        data: a dpdata System's data, with atom_names and atom_types (natoms,) indices into them.
        Only elements that atoms use must be in the type_map (a dpdata MultiSystems gives each
        system the names of all of them, most with zero atoms).  A mixed-type system (dpdata's
        ``convert_to_mixed_type``: atom_names ["MIXED_TOKEN"], types per frame in
        real_atom_types) is refused: dpdata 1.1 cannot hold its labels (``LabeledSystem`` checks
        real_atom_names against the one name MIXED_TOKEN), whatever the driver.
        """
        if "real_atom_types" in data:
            raise InputError("numdp driver: a mixed-type system (dpdata's convert_to_mixed_type, "
                             "atom_names ['MIXED_TOKEN']) cannot be labelled: label the systems "
                             "before mixing them (deepmd/npy/mixed data loads as a MultiSystems "
                             "of ordinary systems)")
        return table_types(data["atom_names"], data["atom_types"], self.model.type_map,
                           "numdp driver")

    def label(self, data: dict) -> dict:
        """Label dpdata system data (dpdata calls this from ``System.predict``).

        data: a dpdata System's data: coords (nframes, natoms, 3) Å, cells (nframes, 3, 3) Å with
        rows the cell vectors, nopbc, and the atoms' elements (`model_types`).  Returns a copy
        with energies (nframes,) eV, forces (nframes, natoms, 3) eV/Å and, for a periodic
        system, virials (nframes, 3, 3) eV in DeePMD-kit's sign (-dE/dstrain, as dpdata stores
        them).  A non-periodic system (nopbc) is evaluated without a box and gets no virials:
        without a cell there is no stress for them to label.
        """
        types = self.model_types(data)
        coords = np.asarray(data["coords"], dtype=np.float64)
        nopbc = bool(data.get("nopbc", False))
        cells = None if nopbc else np.asarray(data["cells"], dtype=np.float64)
        nframes, natoms = coords.shape[0], types.shape[0]
        energies = np.empty(nframes)
        forces = np.empty((nframes, natoms, 3))
        virials = np.empty((nframes, 3, 3))
        for f in range(nframes):
            try:
                out = self.model.evaluate(coords[f], types, None if nopbc else cells[f],
                                          atom_virial=False)
            except InputError as exc:
                raise InputError(f"numdp driver: frame {f}: {exc}") from None
            energies[f] = out.energy
            forces[f] = out.forces
            virials[f] = out.virial
        labeled = dict(data)
        labeled["energies"] = energies
        labeled["forces"] = forces
        if nopbc:
            labeled.pop("virials", None)   # a LabeledSystem's own labels must not survive
        else:
            labeled["virials"] = virials
        return labeled
