"""`python -m training` is `wearable-train`."""

from training.cli import main

raise SystemExit(main())
