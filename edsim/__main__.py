"""``python -m edsim run scenario.yaml`` / ``python -m edsim check history.csv`` (see ``edsim.cli``)."""
import sys

from .cli import main

sys.exit(main())
