"""``python tools/summary.py ...`` is ``detector summary ...`` (``detector/commands/summary.py``)."""

import sys

from detector.commands.summary import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/summary.py"))
