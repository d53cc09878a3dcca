"""`python -m numdp ...`: the same command line as `numdp ...` (numdp.cli)."""
import sys

from .cli import main

if __name__ == "__main__":   # not when imported (pydoc, pdoc, pkgutil.walk_packages, a spawned child)
    sys.exit(main())
