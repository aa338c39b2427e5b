"""``python tools/eval.py ...`` is ``detector eval ...`` (``detector/commands/eval.py``)."""

import sys

from detector.commands.eval import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/eval.py"))
