"""``python tools/quantize.py ...`` is ``detector quantize ...`` (``detector/commands/quantize.py``)."""

import sys

from detector.commands.quantize import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/quantize.py"))
