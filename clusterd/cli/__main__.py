"""``python -m clusterd.cli``: the same as the ``clusterctl`` console script."""

import sys

from clusterd.cli import main

sys.exit(main())
