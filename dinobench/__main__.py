"""``python -m dinobench`` == the ``dinobench`` command."""

import sys

from dinobench.cli import main

sys.exit(main())
