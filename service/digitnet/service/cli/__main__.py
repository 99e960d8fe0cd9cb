"""`python -m digitnet.service.cli`: the same as the `digitnet` command."""

import sys

from digitnet.service.cli.main import main

sys.exit(main())
