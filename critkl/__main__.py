"""``python -m critkl`` is the ``critkl`` command."""
from critkl.cli import main

if __name__ == "__main__":
    main()
