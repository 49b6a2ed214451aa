"""``python -m critkl`` is the ``critkl`` command (same arguments, same exit status)."""
import sys

from critkl.cli import main

if __name__ == "__main__":
    sys.exit(main())
