"""``python -m flownb.cli``: the ``flownb`` command."""

import sys

from flownb.cli.main import main

sys.exit(main())
