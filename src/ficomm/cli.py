"""`ficomm` console script: one entry point, subcommands dispatched lazily so that
`ficomm train` never imports the analysis stack and vice versa."""

from __future__ import annotations

import importlib
import sys

_COMMANDS = {
    "train": ("ficomm.train", "one training run from a YAML config plus key=value overrides"),
    "evaluate": (
        "ficomm.evaluate",
        "evaluate a finished run's final policy (interventions, an animation)",
    ),
    "analysis": (
        "ficomm.analysis.cli",
        "aggregate run CSVs, draw figures and tables, test the paper's claims, publish to W&B",
    ),
}


def _usage() -> str:
    lines = ["usage: ficomm <command> [args...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in _COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in _COMMANDS:
        print(f"ficomm: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(_COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
