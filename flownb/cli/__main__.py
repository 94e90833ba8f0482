"""``python -m flownb.cli``: the ``flownb`` command."""

import sys

from flownb.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
