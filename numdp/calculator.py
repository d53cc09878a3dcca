"""DeePMD-kit's ASE calculator path: ``from numdp.calculator import DP`` (was
``from deepmd.calculator import DP``).  The class lives in numdp.ase (extra ``numdp[ase]``)."""
from .ase import DP

__all__ = ["DP"]
