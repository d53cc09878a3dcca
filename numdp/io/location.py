"""``PATH#LOCATION``: a data system inside a container, DeePMD-kit's "#" convention.

``data.h5#/water/data_0`` is group /water/data_0 of the HDF5 file data.h5 (deepmd/hdf5,
numdp.io.h5_system); ``data.lmdb#nloc=192`` is a group of frames of an LMDB dataset
(numdp.io.lmdb_system).  `DataLocation.parse` is the one place such a text is split; the rule,
for a text with one or more "#":

1. the whole text, if it exists (a file ``run#2.h5`` or a folder ``sys#1``), is that path, no
   location (DeePMD-kit takes an existing folder whole too; it refuses an existing file whose
   name holds a "#");
2. else the last "#" whose left part exists (file or folder) splits it: ``runs#2/d.h5#/g`` is
   group /g of runs#2/d.h5 (even where a folder ``runs`` exists too), ``d.h5#/a#b`` group /a#b
   of d.h5.  For a text with one "#" this is DeePMD-kit's split (`deepmd.utils.path.DPPath`);
   DeePMD-kit refuses folders whose name holds a "#" and drops what follows a second "#"
   (reading d.h5#/a#b as group /a);
3. else nothing exists: the first "#" splits it, and whoever opens the path reports it missing.

An empty location (``d.h5#``, and ``d.h5#/``, which `pathlib` writes ``d.h5#``) names the whole
file: the root group, or every group of an LMDB dataset.  `~` is not expanded (numdp's input
files expand it when they resolve a path; DeePMD-kit does not).  The location text is kept as
written; its meaning (an HDF5 group path, an LMDB group name) is the reader's.
"""
from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass


@dataclass(frozen=True)
class DataLocation:
    """A data path and the location inside it.

    path: the file or folder on disk.  location: the text after the "#" that split it ("" when
    nothing follows the "#"), or None when the text names `path` alone.
    """

    path: pathlib.Path
    location: str | None = None

    @classmethod
    def parse(cls, text) -> DataLocation:
        """The DataLocation of `text` (str or path) by the module's rule (which looks at the disk)."""
        text = os.fspath(text)
        cuts = [i for i, ch in enumerate(text) if ch == "#"]
        if not cuts or os.path.exists(text):
            return cls(pathlib.Path(text))
        cut = next((i for i in reversed(cuts) if os.path.exists(text[:i])), cuts[0])
        return cls(pathlib.Path(text[:cut]), text[cut + 1:])

    def __str__(self) -> str:
        return os.fspath(self.path) if self.location is None else f"{self.path}#{self.location}"

    def as_path(self) -> pathlib.Path:
        """The text as a Path (how systems are named in lists and messages: ``file#/group``)."""
        return pathlib.Path(str(self))
