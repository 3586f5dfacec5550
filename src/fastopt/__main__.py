"""Command line: ``python -m fastopt <command>``."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Sequence


def _info(args: argparse.Namespace) -> int:
    from fastopt.info import build_info, format_info

    info = build_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from fastopt import bench
    from fastopt.bench import cases

    def choose(given: str | None, known: Collection[str], what: str) -> list[str] | None:
        chosen = given.split(",") if given else None
        unknown = sorted(set(chosen or ()) - set(known))
        if unknown:
            raise SystemExit(f"unknown {what} {unknown}; choose from {list(known)}")
        return chosen

    bench.run(rules=choose(args.rules, cases.CONFIGS, "rules"), shapes=choose(args.shapes, cases.SHAPES, "shapes"),
              implementations=choose(args.impl, cases.IMPLEMENTATIONS, "implementations"),
              storages=choose(args.storage, cases.STORAGES, "storages"), num_threads=args.threads, repeats=args.repeats, json_path=args.json, png_path=args.png)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fastopt import demo

    try:
        if args.storage:  # the storage tables: each storage choice, then the wide-gradient regression
            demo.storage_tables(args.optimizers or ",".join(demo.STORAGE_OPTIMIZERS), args.storage,
                                epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
            return 0
        optimizers = args.optimizers.split(",") if args.optimizers else tuple(demo.OPTIMIZERS)
        demo.run(optimizers, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                 png=None if args.no_png else args.png)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastopt", description="fastopt command line")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser("info", help="print version, build flags, OpenMP, threads and SIMD width")
    info.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    info.set_defaults(run=_info)

    from fastopt.bench import cases

    peers = "; ".join(f"{what}, for {' and '.join(rules)} ({install})"
                      for what, rules, install in cases.OPTIONAL_PEERS.values())
    bench = commands.add_parser(
        "bench", help="time the update rules against NumPy, torch.optim, "
                      + ", ".join(what.split(" (")[0] for what, _, _ in cases.OPTIONAL_PEERS.values())
                      + " (when installed) and the memory-bandwidth rooflines",
        description="Time one step of each update rule on each shape (float32; "
                    + " and ".join(cases.STORAGE_RULES) + " also in every storage type: "
                    + ", ".join(cases.STORAGES) + ", as params/state), every implementation interleaved "
                    "repeat after repeat, and report medians and speed-ups.",
        epilog="Columns: 'B/elem' is the bytes a step moves per element, counted from its storage (float32 "
               "Adam: 28; float32 params with int8 state: 16.06). 'same-stream' is a STREAM-style kernel that "
               "reads and writes as many arrays, of the same sizes, as the rule "
               "(Adam: 4 read, 3 written, 28 B/element), with the rule's chunking and threads: the honest bound "
               "for a memory-bound step; '% of same-stream' is its time over fastopt's. '% of axpy roofline' "
               "prices the rule's bytes at an in-place axpy's speed (a yardstick: more streams get more memory "
               "parallelism). 'x vs fastest peer' is the fastest of " + ", ".join(cases.PEERS)
               + " in the row over fastopt. Optional peers are skipped with a note when missing: torch "
               "(pip install torch), " + peers + ".")
    bench.add_argument("--rules", help="comma-separated subset of: " + ",".join(cases.CONFIGS))
    bench.add_argument("--shapes", help="comma-separated subset of: " + ",".join(cases.SHAPES))
    bench.add_argument("--impl", help="comma-separated subset of: " + ",".join(cases.IMPLEMENTATIONS)
                       + " (default: all; those not installed are skipped, with a note)")
    bench.add_argument("--storage", help="comma-separated subset of: " + ",".join(cases.STORAGES)
                       + " (params/state; default: all; rules other than " + ",".join(cases.STORAGE_RULES)
                       + " run in " + cases.FLOAT32 + " only)")
    bench.add_argument("--threads", type=int, default=None,
                       help="threads for fastopt and the peers (default: fastopt's)")
    bench.add_argument("--repeats", type=int, default=7, help="interleaved repeats per case (median is reported)")
    bench.add_argument("--json", default="fastopt-bench.json", help="where to write the results")
    bench.add_argument("--png", default="fastopt-bench.png", help="where to write the chart (needs matplotlib)")
    bench.set_defaults(run=_bench)

    demo = commands.add_parser("demo", help="train a NumPy MLP with batch norm on the UCI digits with each "
                                            "optimizer; print accuracy and step times against NumPy")
    from fastopt.demo import OPTIMIZERS

    demo.add_argument("--optimizers", help="comma-separated subset of: " + ",".join(OPTIMIZERS))
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--batch-size", type=int, default=64)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--storage", help="instead, compare storage choices: 'all' or a comma-separated subset of: "
                      "float32,state-bf16,state-int8,bf16-master,bf16-master-int8,bf16-stochastic,bf16 "
                      "(then the wide-gradient regression with float32, bf16 and int8 state)")
    demo.add_argument("--png", default="fastopt-demo.png", help="where to save the loss curves (needs matplotlib)")
    demo.add_argument("--no-png", action="store_true", help="do not save the loss curves")
    demo.set_defaults(run=_demo)

    from fastopt import playground as playground_module

    playground = commands.add_parser("playground", help="run the optimizers on 2-D test surfaces (Rosenbrock, "
                                                        "Beale, ...) and draw their paths")
    playground_module.add_arguments(playground)
    playground.set_defaults(run=playground_module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
