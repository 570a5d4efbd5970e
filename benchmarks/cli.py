"""twograd: benchmark and cross-check the two ways of backpropagating.

  twograd bench                 every workload at representative sizes, tables + report + plots
  twograd check                 cross-checks only; exit status 1 on any mismatch
  twograd plot RESULTS.json     redraw the plots from saved results
  twograd show chain --order 1  the forward graph, its derivative graph, the book's Figure 6.10
  twograd show scan             a recurrence as one scan op, and its derivative: a reverse scan
  twograd explain chain         symsym's build_grad, step by step (also: explain scan)
  twograd list                  workloads, sizes, backends and peers
  twograd gradbench ...         the GradBench tool (protocol on stdin/stdout)
"""

from __future__ import annotations

# One BLAS thread, before anything imports numpy: timings must not depend on the core count.
from .timing import limit_threads  # isort: skip

limit_threads(1)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from . import __version__  # noqa: E402
from .backends import OWN as DEFAULT_BACKENDS  # noqa: E402

#: the numba / llvmlite releases whose linker tests and numba cells' cross-checks passed (README's quick start
#: says the same); CI runs the oldest (through the peers' pin) and the newest a fresh install resolves
NATIVE_TESTED = "numba 0.65.1 to 0.68.1 (llvmlite 0.47 to 0.50)"
SHOW_MAX_ORDER = 4       # the derivative graph roughly triples with each order; order 4 draws ~150 nodes
SHOW_MAX_DEPTH = 100
EXPLAIN_MAX_DEPTH = 10_000
DRAW_MAX_NODES = 400     # matplotlib takes ~15 ms a node: a bigger picture is minutes and unreadable
FIGURE_FORMATS = (".png", ".svg", ".pdf")


# ------------------------------------------------------------ argument checks
# Everything a user can get wrong is refused before any long work starts, in one line.

class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``twograd bench: error: ... (see --help)``, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _fail(message: str):
    """Stop with a one-line message on stderr and exit status 2 (no traceback)."""
    print(f"twograd: {message}", file=sys.stderr)
    raise SystemExit(2)


def _seconds(text: str) -> float:
    """A time limit: a finite number of seconds, not negative."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text!r}")
    return value


def _int_in(low: int, high: int, why: str = ""):
    """An argparse type: an integer in ``[low, high]``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}{why}, got {value}")
        return value
    return parse


def _writable_folder(path: str, option: str = "--out") -> None:
    """Make ``path`` (a folder) or say in one line why it cannot be written, before the run."""
    if os.path.exists(path) and not os.path.isdir(path):
        _fail(f"{option} {path!r} is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        _fail(f"cannot write to {option} {path!r}: {e.strerror or e}")


def _writable_file(path: str, option: str = "--out") -> None:
    """Check that a figure can be written at ``path`` (folder exists and is writable, known format)."""
    if not path.lower().endswith(FIGURE_FORMATS):
        _fail(f"{option} {path!r}: the figure must end in {', '.join(FIGURE_FORMATS)}")
    if os.path.isdir(path):
        _fail(f"{option} {path!r} is a folder, not a file")
    _writable_folder(os.path.dirname(os.path.abspath(path)), f"the folder of {option}")


def _selection(specs: list[str] | None, all_sizes: bool, which: str = "default"):
    """``NAME[:SIZE,SIZE]`` specs as [(workload, [sizes])]; no spec: every workload."""
    from .workloads import get, visible

    if not specs:
        return [(w, list(w.sizes if all_sizes else getattr(w, which))) for w in visible()]
    out = []
    for spec in specs:
        for part in spec.split(","):
            if not part.strip():
                continue
            name, _, sizes = part.strip().partition(":")
            try:
                w = get(name)
            except KeyError as e:
                _fail(e.args[0] + " (see 'twograd list')")
            chosen = [s for s in sizes.split("+") if s] if sizes else list(w.sizes if all_sizes
                                                                             else getattr(w, which))
            bad = [s for s in chosen if s not in w.sizes]
            if bad:
                raise SystemExit(f"twograd: workload {name!r} has no size {bad[0]!r} "
                                 f"(sizes: {', '.join(w.sizes)})")
            out.append((w, chosen))
    if not out:
        _fail(f"-w {' '.join(repr(x) for x in specs)} names no workload (see 'twograd list')")
    return out


def _settings(args, timing: bool):
    from .harness import Settings
    from .peers import PEERS, installed

    backends = tuple(b for b in args.backends.split(",") if b)
    if not backends:
        _fail(f"--backends {args.backends!r} names no backend (choose from {', '.join(DEFAULT_BACKENDS)})")
    if args.max_time < args.min_time:
        _fail(f"--max-time {args.max_time:g} is less than --min-time {args.min_time:g}")
    for b in backends:
        if b not in DEFAULT_BACKENDS:
            raise SystemExit(f"twograd: unknown backend {b!r} (choose from {', '.join(DEFAULT_BACKENDS)})")
    if args.peers == "installed":
        peers = tuple(installed())
    elif args.peers in ("none", ""):
        peers = ()
    else:
        peers = tuple(p for p in args.peers.split(",") if p)
        for p in peers:
            if p not in PEERS:
                raise SystemExit(f"twograd: unknown peer {p!r} (choose from {', '.join(PEERS)})")
    if args.peer_budget <= 0:
        _fail(f"--peer-budget must be more than 0 seconds, got {args.peer_budget:g}")
    return Settings(min_time=args.min_time, min_count=args.min_count, max_time=args.max_time, timing=timing,
                    memory=timing and not args.no_memory, backends=backends, peers=peers,
                    peer_budget=args.peer_budget)


def _print_notes(results) -> None:
    from .peers import PEERS

    missing = [p for p in PEERS if p not in results["settings"]["peers"]]
    if missing:
        print(f"peers not run: {', '.join(missing)} (not installed or not chosen; see twograd list)",
              file=sys.stderr)
    for note in results["notes"]:
        print(f"note: {note}", file=sys.stderr)


def _loud(results) -> int:
    from .harness import failures

    bad = failures(results)
    for line in bad:
        print(line, file=sys.stderr)
    if bad:
        print(f"twograd: {len(bad)} cross-check(s) FAILED", file=sys.stderr)
        return 1
    print(f"all {len(results['checks'])} cross-checks passed", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from . import harness, plots, report

    selection = _selection(args.workload, args.all_sizes)
    settings = _settings(args, timing=True)
    _writable_folder(args.out)  # now, not after a long run
    results = harness.run(selection, settings, progress=not args.no_progress)
    if settings.memory and any(w.name == "lstm-scan" for w, _ in selection):
        from .checkpointing import measure_all  # checkpointing's trade, on a deep chain and on lstm-scan

        results["checkpointing"] = measure_all(args.min_time)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1, default=float)
    drawn = [] if args.no_plots else plots.draw_all(results, args.out)
    if not args.no_plots:
        drawn.append(_figure(args.out))
    with open(os.path.join(args.out, "report.md"), "w") as fh:
        fh.write(report.markdown_report(results, drawn))
    print(report.render(report.tables(results, checks=args.checks), args.format), end="")
    _print_notes(results)
    print(f"wrote {path}, {os.path.join(args.out, 'report.md')} and {len(drawn)} plots "
          f"in {results['wall_time']:.0f} s", file=sys.stderr)
    return _loud(results)


def _figure(folder: str) -> str:
    from .figure import book_form, chain_example, derivative, draw

    z, w = chain_example()
    draw(z, [z, book_form(z, derivative(z, w))], os.path.join(folder, "figure_6_10.png"),
         "Figure 6.10: z = f(f(f(w))) and the nodes grad adds (orange)")
    return "figure_6_10.png"


def cmd_check(args) -> int:
    from . import harness, report

    selection = _selection(args.workload, args.all_sizes)
    results = harness.run(selection, _settings(args, timing=False), progress=not args.no_progress)
    print(report.render([report.check_table(results), report.error_table(results)], args.format), end="")
    _print_notes(results)
    return _loud(results)


def cmd_plot(args) -> int:
    from . import plots

    try:
        results = plots.load_results(args.results)
    except plots.ResultsError as e:
        _fail(str(e))
    folder = args.out or os.path.dirname(os.path.abspath(args.results))
    _writable_folder(folder, "--out" if args.out else "the results file's folder")
    try:
        drawn = plots.draw_all(results, folder)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        _fail(f"{args.results}: not results as 'twograd bench' writes them ({type(e).__name__}: {e})")
    print("\n".join(os.path.join(folder, d) for d in drawn))
    return 0


def _chain(args):
    from .figure import chain_example
    from .recurrence import scan_example

    if args.workload not in ("chain", "scan"):
        raise SystemExit(f"twograd: {args.command} shows the book's chain example or a scan; got {args.workload!r}")
    return (chain_example if args.workload == "chain" else scan_example)(args.f, args.depth)


def cmd_show(args) -> int:
    import symsym
    from common import debugprint, pprint, toposort

    from .figure import book_form, derivative, draw

    if args.workload == "scan":
        return _show_scan(args)
    if args.forward and args.order != 1:
        _fail(f"show --forward draws first derivatives in both modes; got --order {args.order}")
    out = args.out or f"chain_{args.f}_d{args.depth}_order{args.order}.png"
    _writable_file(out)
    z, w = _chain(args)
    d = derivative(z, w, args.order)
    book = book_form(z, d)
    drawn = len(toposort([z, book]))
    if drawn > DRAW_MAX_NODES:
        _fail(f"show: the order-{args.order} derivative of a depth-{args.depth} chain has {drawn} nodes to draw, "
              f"more than {DRAW_MAX_NODES}; lower --order or --depth")
    opt, rep = symsym.optimize(d)
    def pp(node, names=False, indent=4):  # binding lines of shared subexpressions line up under the first
        return pprint(node, names=names).replace("\n", "\n" + " " * indent)

    print(f"forward graph ({args.f} chain, depth {args.depth}):\n  {pp(z, indent=2)}\n")
    print(debugprint(z), "\n")
    print(f"derivative graph, order {args.order} (as grad builds it):\n  {pp(d, indent=2)}\n"
          f"  = {pp(d, names=True)}   (forward nodes by name)\n")
    print(debugprint(d), "\n")
    before, after = _counts(rep)
    print(f"after rewrites ({before} -> {after} nodes):\n  {pp(opt, indent=2)}\n")
    if args.order == 1:
        print(f"in the book's terms (Figure 6.10):\n  dz/dw = {pp(book, names=True, indent=10)}\n")
    title = f"z = {args.f}^{args.depth}(w): the order-{args.order} derivative graph (orange: added by grad)"
    if args.forward:
        _draw_both_modes(z, w, book, out, title.replace("added by grad", "added by grad / by jvp"))
    else:
        draw(z, [z, book], out, title)
    print(f"drew {out}")
    return 0


def _show_scan(args) -> int:
    """Print the scan example and its derivative, and draw both graphs (the loop nodes as boxes)."""
    from .figure import derivative, draw
    from .recurrence import scan_example, show_scan

    if args.forward:
        _fail("show --forward draws the book's chain; a scan's tangent loop is printed by 'twograd explain scan'")
    out = args.out or f"scan_{args.f}_d{args.depth}_order{args.order}.png"
    _writable_file(out)
    print(show_scan(args.f, args.depth, args.order))
    z, w = scan_example(args.f, args.depth)
    draw(z, [z, derivative(z, w, args.order)], out,
         f"z from a {args.depth}-step scan of {args.f}: its order-{args.order} derivative (orange: added by grad)")
    print(f"drew {out}")
    return 0


def _forward_graph(z, w):
    """(dw, dz): the chain's forward-mode tangent graph for a tangent variable dw, in the book's labels."""
    import symsym
    from common import api as T

    from .figure import book_form

    dw = T.var("dw", w.shape, w.dtype)
    return dw, book_form(z, symsym.jvp(z, w, dw))


def _draw_both_modes(z, w, book, out: str, title: str) -> None:
    """Reverse mode (``grad``, what Figure 6.10 draws) and forward mode (``jvp``) side by side in one figure,
    the nodes each added filled orange; printed first, the forward graph as text."""
    import matplotlib.pyplot as plt

    import symsym
    from common import pprint

    dw, tangent = _forward_graph(z, w)
    print(f"forward mode (jvp, tangent dw pushed from w up):\n  dz = {pprint(tangent, names=True)}\n")
    fig = symsym.draw_panels([([z, book], symsym.added_nodes([z], [z, book]), "reverse mode: grad (dz/dw)"),
                              ([z, tangent], symsym.added_nodes([z, dw], [z, tangent]),
                               "forward mode: jvp along dw (dz)")], title=title)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    if out.endswith(".png"):
        fig.savefig(out[:-4] + ".svg", bbox_inches="tight")
    plt.close(fig)


def _counts(rep):
    if isinstance(rep, dict):
        return rep.get("nodes_before"), rep.get("nodes_after")
    return getattr(rep, "nodes_before", None), getattr(rep, "nodes_after", None)


def cmd_explain(args) -> int:
    import symsym

    z, w = _chain(args)
    print(symsym.explain(z, w))
    if args.forward:
        print(f"\n{symsym.explain_jvp(z, w)}\n\n{symsym.explain_jacobian(z, w)}")
    return 0


def cmd_list(args) -> int:
    from tabulate import tabulate

    from .peers import PEERS
    from .workloads import visible

    rows = [[w.name, w.kind, " ".join(w.sizes), " ".join(w.default), w.doc] for w in visible()]
    print(tabulate(rows, ["workload", "kind", "sizes", "default", "what"], tablefmt="simple"))
    print(f"\nnative linker (symsym-numba): {_native_versions()}; tested with {NATIVE_TESTED}")
    from .backends import BACKENDS

    print("\nbackends:")
    for name in DEFAULT_BACKENDS:
        print(f"  {name:<14} {BACKENDS[name].about}")
    print("peers:")
    for name, p in PEERS.items():
        why = p.missing()
        state = p.version() if why is None else ("not installed" if "not installed" in why else "cannot run")
        what = why if state == "cannot run" else type(p).__doc__.splitlines()[0]
        print(f"  {name:<14} {state:<14} {what}")
    return 0


def _native_versions() -> str:
    """The installed numba and llvmlite, read from their metadata (importing numba takes a second)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"numba {version('numba')}, llvmlite {version('llvmlite')}"
    except PackageNotFoundError:
        return "numba not installed (pip install 'twograd[native]')"


def cmd_gradbench(args) -> int:
    try:
        from .gradbench import tool
    except ImportError as e:
        print(f"twograd gradbench: not available ({e})", file=sys.stderr)
        return 2
    return tool.run(args)


def _run_options(p) -> None:
    p.add_argument("-w", "--workload", action="append", metavar="NAME[:SIZE+SIZE]",
                   help="a workload, optionally with sizes joined by '+' (e.g. chain:sin-d1000+sin-d10000, "
                        "mlp:medium); repeat or comma-separate; default: every workload (see 'twograd list')")
    p.add_argument("--all-sizes", action="store_true", help="every size, not the representative default ones")
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                   help=f"comma-separated subset of {','.join(DEFAULT_BACKENDS)} (default: all of them)")
    p.add_argument("--peers", default="installed",
                   help="comma-separated peers (torch,torch-compile,jax,autograd,pytensor-numba,pytensor-cvm), "
                        "'installed' (default: those that can run here) or 'none'")
    p.add_argument("--format", choices=("text", "markdown", "csv", "json"), default="text",
                   help="table format on stdout (default: text)")
    p.add_argument("--peer-budget", type=_seconds, default=60.0, metavar="SECONDS",
                   help="seconds a peer may take for its one-off (trace + compile + first call) or any call; "
                        "past it its worker process is killed and the cell reads 'compile over budget' "
                        "(default: 60)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress on stderr (a bar on a terminal, else one line per finished cell)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="twograd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"twograd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("bench", help="time, compare and cross-check; write tables, report and plots",
                       description=f"Every workload at representative sizes on {', '.join(DEFAULT_BACKENDS)} "
                                   "and the installed peers: median time per derivative, ratio to hand-written numpy, "
                                   "symsym's one-off cost and break-even, peak memory, graph sizes; always "
                                   "cross-checked. Writes results.json, report.md and PNG/SVG plots.")
    _run_options(p)
    p.add_argument("--out", default="twograd-results", help="output folder (default: twograd-results/)")
    p.add_argument("--min-time", type=_seconds, default=0.2, help="seconds of repeats per cell, at least")
    p.add_argument("--min-count", type=_int_in(1, 10**6), default=5, help="repeats per cell, at least")
    p.add_argument("--max-time", type=_seconds, default=2.0, help="seconds of repeats per cell, at most")
    p.add_argument("--no-memory", action="store_true", help="skip the tracemalloc peak-memory pass")
    p.add_argument("--no-plots", action="store_true", help="write no plots")
    p.add_argument("--checks", choices=("all", "failed", "none"), default="failed",
                   help="which cross-checks to print (the report has all)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("check", help="cross-checks only; exit status 1 on any mismatch",
                       description="Run every selected workload once per backend and compare: each against "
                                   "finite differences of the reference interpreter, every backend vs symnum, "
                                   "symsym vs the hand-written gradient, peers vs symnum. Exit status 1 on any "
                                   "mismatch.")
    _run_options(p)
    p.set_defaults(func=cmd_check, min_time=0.0, min_count=1, max_time=0.0, no_memory=True)

    p = sub.add_parser("plot", help="redraw the plots from a saved results.json")
    p.add_argument("results", help="a results.json written by 'twograd bench'")
    p.add_argument("--out", help="folder for the plots (default: the results file's folder)")
    p.set_defaults(func=cmd_plot)

    for name, helptext, func in (
            ("show", "print the chain's forward and derivative graphs and draw Figure 6.10", cmd_show),
            ("explain", "symsym's build_grad on the chain, step by step", cmd_explain)):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("workload", nargs="?", default="chain",
                       help="the example: 'chain' (unrolled, the book's) or 'scan' (a recurrence as one loop op)")
        p.add_argument("--f", choices=("sin", "tanh", "exp"), default="sin", help="the function f (default sin)")
        top = SHOW_MAX_DEPTH if name == "show" else EXPLAIN_MAX_DEPTH
        p.add_argument("--depth", type=_int_in(1, top), default=3,
                       help=f"how many times f is applied: the scan's length (default 3, at most {top})")
        p.add_argument("--forward", action="store_true",
                       help="also forward mode (jvp), beside reverse mode: "
                            + ("the tangent graph drawn next to grad's" if name == "show"
                               else "its sweep from w up, then the chain's Jacobian costs in both orders"))
        if name == "show":
            p.add_argument("--order", type=_int_in(1, SHOW_MAX_ORDER, " (the graph triples with each order)"),
                           default=1, help=f"derivative order (default 1, at most {SHOW_MAX_ORDER})")
            p.add_argument("--out", help="PNG path (default chain_<f>_d<depth>_order<k>.png)")
        p.set_defaults(func=func)

    p = sub.add_parser("list", help="workloads, sizes, backends and peers (installed or not)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("gradbench", help="the GradBench tool: answer its protocol on stdin/stdout")
    from .gradbench.tool import add_arguments as gradbench_arguments

    gradbench_arguments(p)
    p.set_defaults(func=cmd_gradbench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `twograd list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # ``python -m benchmarks.cli`` is ``python -m benchmarks`` too
    raise SystemExit(main())
