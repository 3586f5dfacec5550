"""A torch model trained on the CPU with torch.optim.AdamW(fused=True) and with fastopt.torch.AdamW, interleaved.

Run:  python benchmarks/torch_model.py [--blocks 100] [--width 128] [--iterations 200] [--threads 2]
                                       [--plot losses.png] [--json out.json]

The model is a deep residual MLP: ``blocks`` blocks of LayerNorm -> Linear ->
GELU with a skip connection, then a linear head -- four parameter tensors a
block (``--blocks 100 --width 128``: 402 tensors, 1.7M parameters).  Two
copies start from the same weights and learn the same regression task on
the same mini-batches, with each optimizer and each way of zeroing the
gradients: ``zero_grad()`` (torch's default, set_to_none=True: autograd
allocates new gradients, which fastopt.torch copies into its arena) and
``zero_grad(set_to_none=False)`` (the gradients are zeroed in place and
autograd accumulates into them: into the arena, for fastopt.torch).  The
four runs take turns iteration by iteration, in a rotating order, so machine
noise hits all alike; an iteration is zero_grad, forward, backward, step.
Reported: the median optimizer-step time and the median whole-iteration
time of each, the ratios of each mode, and the loss curves (the same to
float32 rounding).  The first ``--warmup`` iterations are not timed.
"""
import argparse
import json
import statistics
import time

import torch

import fastopt
import fastopt.torch


def model(blocks, width, seed=0):
    torch.manual_seed(seed)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.linear = torch.nn.LayerNorm(width), torch.nn.Linear(width, width)

        def forward(self, x):
            return x + torch.nn.functional.gelu(self.linear(self.norm(x)))

    return torch.nn.Sequential(*[Block() for _ in range(blocks)], torch.nn.Linear(width, 1))


def run(args):
    torch.set_num_threads(args.threads)
    fastopt.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(args.width, 1, generator=g) / args.width ** 0.5
    batches = [torch.randn(args.batch, args.width, generator=g) for _ in range(16)]
    runs = {}
    for set_to_none in (True, False):
        for name, make in (("torch.optim.AdamW(fused=True)", lambda p: torch.optim.AdamW(p, lr=args.lr, fused=True)),
                           ("fastopt.torch.AdamW", lambda p: fastopt.torch.AdamW(p, lr=args.lr))):
            m = model(args.blocks, args.width)
            runs[f"{name}, set_to_none={set_to_none}"] = {"model": m, "opt": make(m.parameters()), "step": [],
                                                          "iteration": [], "loss": [], "set_to_none": set_to_none}
    for i in range(args.iterations):
        x = batches[i % len(batches)]
        y = torch.tanh(x @ teacher)
        order = list(runs.values())
        for r in order[i % len(order):] + order[:i % len(order)]:  # who goes first rotates too
            start = time.perf_counter()
            r["opt"].zero_grad(set_to_none=r["set_to_none"])
            loss = torch.mean((r["model"](x) - y) ** 2)
            loss.backward()
            before_step = time.perf_counter()
            r["opt"].step()
            end = time.perf_counter()
            r["loss"].append(loss.item())
            if i >= args.warmup:
                r["step"].append(end - before_step)
                r["iteration"].append(end - start)
    params = list(next(iter(runs.values()))["model"].parameters())
    summary = {"tensors": len(params), "parameters": sum(p.numel() for p in params), "threads": args.threads,
               "iterations": args.iterations, "batch": args.batch, "runs": {}}
    for name, r in runs.items():
        summary["runs"][name] = {"step_ms": 1e3 * statistics.median(r["step"]),
                                 "iteration_ms": 1e3 * statistics.median(r["iteration"]), "losses": r["loss"]}
    results = list(summary["runs"].values())
    summary["speedups"] = {}
    for t, f, mode in ((results[0], results[1], "set_to_none=True"), (results[2], results[3], "set_to_none=False")):
        summary["speedups"][mode] = {"step": t["step_ms"] / f["step_ms"], "iteration": t["iteration_ms"] / f["iteration_ms"]}
    summary["largest_loss_difference"] = max(abs(a - b) / abs(a) for r in results[1:]
                                             for a, b in zip(results[0]["losses"], r["losses"]))
    return summary


def report(summary):
    print(f"{summary['tensors']} parameter tensors, {summary['parameters']:,} parameters, batch {summary['batch']}, "
          f"{summary['threads']} threads, {summary['iterations']} iterations (medians)")
    print(f"{'optimizer, zero_grad mode':50} {'step ms':>9} {'iteration ms':>13} {'final loss':>11}")
    for name, r in summary["runs"].items():
        print(f"{name:50} {r['step_ms']:9.3f} {r['iteration_ms']:13.3f} {r['losses'][-1]:11.6f}")
    for mode, s in summary["speedups"].items():
        print(f"fastopt.torch with {mode}: step {s['step']:.2f}x, iteration {s['iteration']:.2f}x as fast as torch")
    print(f"losses differ by at most {summary['largest_loss_difference']:.2g} (relative)")


def plot(summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for (name, r), style in zip(summary["runs"].items(), ("-", "--", "-.", ":")):
        ax.plot(r["losses"], style, label=name)
    ax.set(xlabel="iteration", ylabel="training loss", yscale="log",
           title=f"{summary['tensors']} tensors, {summary['parameters']:,} parameters")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", help="write the loss curves to this PNG (needs matplotlib)")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args(argv)
    if not 0 <= args.warmup < args.iterations:
        parser.error("--warmup must be at least 0 and below --iterations")
    summary = run(args)
    report(summary)
    if args.plot:
        plot(summary, args.plot)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
