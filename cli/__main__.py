"""`python -m cli ...` is the same as `detector ...`."""

import sys

from cli.main import main

sys.exit(main())
