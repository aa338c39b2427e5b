"""``python tools/browse_dataset.py ...`` is ``detector browse ...`` (``detector/commands/browse.py``)."""

import sys

from detector.commands.browse import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/browse_dataset.py"))
