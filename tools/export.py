"""``python tools/export.py ...`` is ``detector export ...`` (``detector/commands/export.py``)."""

import sys

from detector.commands.export import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/export.py"))
