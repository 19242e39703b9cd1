"""``mibounds estimate FILE``: the MI of a user's samples in one line (``mibounds.estimate``).

The file is read by ``mibounds.arrays.load_arrays`` (.npz, .npy, .csv, .parquet; ``--x`` /
``--y`` / ``--views`` pick the arrays or columns); the answer is one line, or one JSON object
with ``--json``; ``--plot`` writes the training / held-out curves. Bad input is one line on
stderr and exit 2, before any training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mibounds.cli.errors import one_line_errors
from mibounds.cli.options import add_common, apply_common, check_writable, parse_params

__all__ = ["register"]

_HELP = """\
Estimate the mutual information between x and y (or one view and the others) from samples in
FILE, on rows held out from training (docs/estimation.md):

  mibounds estimate data.npz                     # arrays x (n, d_x) and y (n, d_y)
  mibounds estimate data.csv --x a,b,c --y target  # columns; or prefixes: --x x picks x0, x1, ..
  mibounds estimate data.npy --x 0:5 --y 5:10    # column indices of a 2-D array
  mibounds estimate views.npz --views views      # (n, M, d): one-vs-rest MI, poly-view bounds

Each seed splits the rows into train / validation / test, standardises on the train rows,
trains a critic on them, stops early on the validation rows and reads the test rows.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``estimate`` to the ``mibounds`` command."""
    p = subparsers.add_parser(
        "estimate",
        help="estimate the MI of your own samples (.npz, .npy, .csv, .parquet)",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, metavar="FILE", help="a .npz, .npy, .csv or .parquet file")
    g = p.add_argument_group("data")
    g.add_argument("--x", metavar="KEY", help="x: an .npz key, column(s) or a column prefix")
    g.add_argument("--y", metavar="KEY", help="y: likewise (default: x and y)")
    g.add_argument("--views", metavar="KEY", help="an (n, M, d) array of an .npz, instead")
    g = p.add_argument_group("estimator")
    g.add_argument(
        "--estimator",
        metavar="NAME",
        help="a catalogue name (default: infonce on pairs, arithmetic on views)",
    )
    g.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="an estimator parameter, e.g. --param alpha=512 (repeatable)",
    )
    g.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds (default 3)")
    g.add_argument("--steps", type=int, default=None, metavar="N", help="most training steps")
    g.add_argument("--batch-size", type=int, default=None, metavar="K", help="batch size K")
    g.add_argument(
        "--selection",
        choices=("early_stopping", "max_checkpoint"),
        default="early_stopping",
        help="checkpoint rule; max_checkpoint reads the test rows and is optimistic "
        "(default early_stopping)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object instead")
    g.add_argument("--plot", type=Path, metavar="PNG", help="write the curves figure here")
    add_common(p, out=None)
    p.set_defaults(func=one_line_errors(lambda args: "estimate")(_estimate))


def _estimate(args: argparse.Namespace) -> int:
    from mibounds.arrays import as_samples, load_arrays
    from mibounds.estimation import estimate

    apply_common(args)
    if args.plot is not None:
        if args.plot.is_dir():
            raise ValueError(f"--plot {str(args.plot)!r} is a directory; give a file name (.png)")
        check_writable(args.plot.parent)
    arrays = load_arrays(args.file, x=args.x, y=args.y, views=args.views)
    names = ("--x " + repr(args.x or "x"), "--y " + repr(args.y or "y"), "--views")
    samples = as_samples(**arrays, names=names)
    data = {"views": samples.views} if samples.kind == "views" else {"x": samples.x, "y": samples.y}
    extra = {"steps": args.steps} if args.steps is not None else {}
    result = estimate(
        **data,
        estimator=args.estimator,
        params=parse_params(args.param),
        seeds=args.seeds,
        batch_size=args.batch_size,
        selection=args.selection,
        device=args.device,
        progress=not args.no_progress,
        **extra,
    )
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        from mibounds import plots

        plots.save(
            plots.estimate_figure(result.curves, value=result.value, title=str(args.file)),
            args.plot,
        )
    print(json.dumps(result.to_dict()) if args.json else str(result))
    return 0
