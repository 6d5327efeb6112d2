"""``python -m mner ...`` (also what ``accelerate launch -m mner ...`` runs)."""

import sys

from mner.cli import main

sys.exit(main())
