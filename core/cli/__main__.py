"""`python -m tritium.core.cli` runs the same command line as `tritium`."""

import sys

from tritium.core.cli import main

sys.exit(main())
