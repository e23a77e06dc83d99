"""`python -m splitcast`: the same as the `splitcast` command."""

import sys

from splitcast.cli import main

sys.exit(main())
