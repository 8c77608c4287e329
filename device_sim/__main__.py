"""`python -m device_sim` is the same as the `wearable-sim` console script."""

import sys

from device_sim.cli import main

sys.exit(main())
