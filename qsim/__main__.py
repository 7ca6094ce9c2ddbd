"""`python -m qsim`: the `qsim` command, for environments where its script is not on PATH."""
import sys

from qsim.cli import main

sys.exit(main())
