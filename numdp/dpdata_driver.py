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
    fparam, aparam: frame and atomic parameters for a model that takes them, used where the
    system's data holds none (`frame_inputs`; DeePMD-kit's `DeepPot.eval` sizes).
    Mistakes are numdp.errors.InputError.
    """

    def __init__(self, model: str | PathLike | DPModel | DeepPot | None = None, *,
                 dp: str | PathLike | DPModel | DeepPot | None = None, precision: str = "double",
                 threads: int | None = None, device: str = "cpu", fparam=None,
                 aparam=None) -> None:
        if (model is None) == (dp is None):
            raise InputError("numdp driver: give the model once, as `model` or as `dp` (DeePMD-kit's "
                             "driver's name for it), " + ("not both" if dp is not None else "got none"))
        from .model.dp_model import model_of

        self.model = model_of(model if dp is None else dp, "numdp driver", precision, threads, device)
        self.fparam = None if fparam is None else np.asarray(fparam, dtype=np.float64)
        self.aparam = None if aparam is None else np.asarray(aparam, dtype=np.float64)
        if self.fparam is not None and not self.model.numb_fparam:
            raise InputError("numdp driver: fparam given, but the model takes no frame parameters "
                             "(numb_fparam 0)")
        if self.aparam is not None and not self.model.numb_aparam:
            raise InputError("numdp driver: aparam given, but the model takes no atomic parameters "
                             "(numb_aparam 0)")

    def frame_inputs(self, data: dict, nframes: int, natoms: int) -> tuple[list, list]:
        """Frame parameters and atomic parameters of each frame: two lists of nframes entries,
        each an array for `DPModel.evaluate` or None (the model's own: its default_fparam).

        From the system's data when dpdata holds them (data types "fparam" (nframes, numb_fparam)
        and "aparam" (nframes, natoms, numb_aparam), registered as dpdata's documentation shows;
        deepmd/npy then reads set.*/fparam.npy and aparam.npy), for a model that takes them;
        else from the driver's `fparam` / `aparam` keywords, sized as DeePMD-kit's
        `DeepPot.eval` takes them: fparam nframes x numb_fparam or numb_fparam (every frame);
        aparam nframes x natoms x numb_aparam, natoms x numb_aparam (every frame) or numb_aparam
        (every atom).  InputError when both give them or a size fits none of these."""
        return ([self._per_frame("fparam", data, nframes, natoms, self.model.numb_fparam, False),
                 self._per_frame("aparam", data, nframes, natoms, self.model.numb_aparam, True)])

    def _per_frame(self, key: str, data: dict, nframes: int, natoms: int, width: int,
                   per_atom: bool) -> list:
        given = getattr(self, key)
        stored = data.get(key) if width else None   # as dp test: read only for a model that takes them
        if stored is not None and given is not None:
            raise InputError(f"numdp driver: the system holds {key} and the driver was given {key} "
                             f"too: give them once")
        if stored is not None:
            stored = np.asarray(stored, dtype=np.float64)
            if stored.size != nframes * (natoms if per_atom else 1) * width:
                shape = f"({nframes}, {natoms}, {width})" if per_atom else f"({nframes}, {width})"
                raise InputError(f"numdp driver: the system's {key} has shape {stored.shape}; "
                                 f"the model takes {shape}")
            return list(stored.reshape(nframes, -1))
        if given is None:
            return [None] * nframes
        frame = (natoms if per_atom else 1) * width
        if given.size == nframes * frame:
            return list(given.reshape(nframes, -1))
        if given.size in (frame, width):
            return [given.reshape(-1)] * nframes
        sizes = (f"{nframes} x {natoms} x {width}, {natoms} x {width} or {width}" if per_atom
                 else f"{nframes} x {width} or {width}")
        raise InputError(f"numdp driver: {key} has {given.size} values; for {nframes} frame(s) of "
                         f"{natoms} atoms give {sizes}")

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
        fparams, aparams = self.frame_inputs(data, nframes, natoms)
        for f in range(nframes):
            try:
                out = self.model.evaluate(coords[f], types, None if nopbc else cells[f],
                                          atom_virial=False, fparam=fparams[f], aparam=aparams[f])
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
