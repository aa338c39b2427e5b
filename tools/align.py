"""``python tools/align.py ...`` is ``detector align ...`` (``detector/commands/align.py``)."""

import sys

from detector.commands.align import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/align.py"))
