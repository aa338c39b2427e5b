"""``python tools/check_dataset.py ...`` is ``detector check-data ...`` (``detector/commands/check_data.py``)."""

import sys

from detector.commands.check_data import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/check_dataset.py"))
