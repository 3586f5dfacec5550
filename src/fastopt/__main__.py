"""Command line: ``python -m fastopt <command>``."""
import argparse
import json
import sys


def _info(args):
    from fastopt.info import build_info, format_info

    info = build_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m fastopt", description="fastopt command line")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser("info", help="print version, build flags, OpenMP, threads and SIMD width")
    info.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    info.set_defaults(run=_info)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
