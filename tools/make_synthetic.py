"""``python tools/make_synthetic.py ...`` is ``detector make-synthetic ...``
(``detector/commands/make_synthetic.py``)."""

import sys

from detector.commands.make_synthetic import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/make_synthetic.py"))
