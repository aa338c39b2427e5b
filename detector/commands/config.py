"""Print a config fully resolved: ``detector config CONFIG [--set KEY=VALUE ...]``.

Bases merged, overrides applied, every key the schema declares filled in with its default: the
YAML a run folder's ``config.yaml`` holds, from which the run can be repeated. CONFIG is a path
or a packaged config's name (``yolox_s``). ``--describe`` prints every key instead: its dotted
path, type, default and description.
"""

from __future__ import annotations

import argparse

import yaml

from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.config import load_config, packaged_configs
from detector.config_sections import RunConfig
from detector.schema import describe_keys


def describe_table() -> str:
    """Every config key as a markdown table: key, type, default, description."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for path, kind, default, help_text in describe_keys(RunConfig):
        if default is None and kind.startswith("a mapping"):
            shown = ""  # a section: its keys follow
        else:  # one flow-style YAML line: 100, plain, [0.5, 1.5], null
            shown = yaml.safe_dump(default, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
        lines.append(f"| {path} | {kind} | {shown} | {help_text} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", nargs="?", help=f"YAML config or packaged name ({', '.join(packaged_configs())})")
    add_overrides_argument(parser)
    parser.add_argument("--describe", action="store_true", help="print every key's type, default and description")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)

    def run() -> int:
        if args.describe:
            print(describe_table())
            return 0
        if args.config is None:
            parser.error("CONFIG is required (or --describe)")
        cfg = load_config(args.config, args.set)
        print(yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None), end="")
        return 0

    return run_tool(run, debug=args.debug)
