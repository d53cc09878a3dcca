"""`python -m numdp ...`: the same command line as `numdp ...` (numdp.cli)."""
import sys

from .cli import main

sys.exit(main())
