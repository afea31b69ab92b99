"""The ``rnnreg`` command line (``rnnreg --help`` and ``rnnreg COMMAND --help`` list the options).

Errors a user can cause (:func:`user_errors`) print one line and exit with status 2 (``--debug``
before the command shows the traceback); Ctrl-C says how to continue and exits with status 130.
Any other exception is a bug and shows its traceback.
"""

import argparse
import json
import sys

from keras_rnnreg import __version__

__all__ = ["main"]

EPILOG = """examples:
  rnnreg list 'jsb_*'
  rnnreg list --cards                                     # the experiment cards (rnnreg reproduce)
  rnnreg train jsb_rnn_plain --data music21-chorales      # music21's Bach chorales, no download
  rnnreg data fetch jsb_chorales                          # opt-in download, sha256 checked
  rnnreg train jsb_rnn_ns --set training.epochs=50        # the JSB benchmark from the data root
  rnnreg evaluate runs/jsb_rnn_plain
  rnnreg reproduce noise_table1 --quick
  rnnreg reproduce normstab_adding --jobs 18              # 2 x 9 seeds at once on one GPU
  rnnreg tune jsb_rnn_ns --quick
  rnnreg tune jsb_rnn_ns --workers 4                      # KerasTuner chief + 4 workers
  rnnreg figure --list
  rnnreg figure noise_loss_surface --out figures           # computed, no data needed
  rnnreg figure noise_spectral_radius --runs runs/jsb_rnn_do runs/jsb_rnn_n --out figures
  rnnreg figure ns_norm_horizon --quick --out figures     # from tiny synthetic runs
  rnnreg data list                                        # the corpora, and which are present

exit status: 0 done; 1 a card ran but some of its runs failed (the same command retries them);
2 bad input (a name, a value, a file, a busy folder; one line says which); 130 Ctrl-C.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage goes to ``--help``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser():
    p = _Parser(prog="rnnreg", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Model zoo of two RNN-regularization papers: list, train, evaluate, "
                "reproduce, tune, draw the papers' figures.")
    p.add_argument("--version", action="version", version=f"rnnreg {__version__}",
                   help="print the version of keras-rnnreg and exit")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in (_add_list, _add_show, _add_train, _add_evaluate, _add_reproduce, _add_tune,
                _add_figure, _add_data):
        add(sub)
    return p


def _add_list(sub):
    ls = sub.add_parser("list", help="list zoo names (with a shell pattern), experiment cards or "
                        "tuner jobs")
    ls.add_argument("pattern", nargs="?", default="*", help="e.g. 'jsb_*', '*_ns', 'timit*'")
    ls.add_argument("--long", "-l", action="store_true",
                    help="with description and the paper's number")
    what = ls.add_mutually_exclusive_group()
    what.add_argument("--keys", action="store_true", help="list every configuration key instead")
    what.add_argument("--cards", action="store_true",
                      help="list the shipped experiment cards (rnnreg reproduce NAME) instead")
    what.add_argument("--jobs", action="store_true",
                      help="list the shipped tuner jobs (rnnreg tune NAME) instead")


def _add_show(sub):
    show = sub.add_parser("show", help="print the resolved configuration of a name as JSON")
    show.add_argument("name", help="zoo name (rnnreg list)")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a configuration key before printing")


def _add_train(sub):
    tr = sub.add_parser("train", help="train a zoo configuration")
    tr.add_argument("name", help="zoo name (rnnreg list)")
    tr.add_argument("--data", help="data file or folder (default: the configuration's data.source)")
    tr.add_argument("--data-root", help="folder to look up relative data paths in ($RNNREG_DATA)")
    tr.add_argument("--epochs", type=_count(1), help="maximum epochs (training.epochs)")
    tr.add_argument("--seed", type=_count(0), help="random seed (default 0; on --resume the run's)")
    tr.add_argument("--out", help="run folder (default runs/NAME, or runs/NAME-sS for seed S != 0)")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a configuration key, e.g. --set optimizer.learning_rate=0.01")
    tr.add_argument("--resume", action="store_true",
                    help="continue the run in --out from its last epoch")
    tr.add_argument("--distribute", choices=("data-parallel", "tpu", "multi-worker"), help="train "
                    "on every device / a TPU / several workers (keras_rnnreg.distribute)")
    verbosity = tr.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="no progress output")
    verbosity.add_argument("--lines", action="store_true",
                           help="one line per epoch instead of progress bars")


def _add_evaluate(sub):
    ev = sub.add_parser("evaluate", help="evaluate a run folder's best checkpoint")
    ev.add_argument("run_dir", help="a run folder of rnnreg train")
    ev.add_argument("--data", help="data file or folder (default: the run's)")
    ev.add_argument("--data-root", help="folder to look up relative data paths in ($RNNREG_DATA)")
    ev.add_argument("--split", default="test", choices=("test", "valid", "train"),
                    help="the split to evaluate (default test)")


def _add_reproduce(sub):
    rp = sub.add_parser("reproduce", help="run an experiment card and write the table")
    rp.add_argument("card", help="a shipped card's name (rnnreg list --cards) or a TOML file")
    rp.add_argument("--quick", action="store_true",
                    help="the card's quick variant (seconds, synthetic data)")
    rp.add_argument("--out", help="folder for the runs and the table (default runs/<card>[-quick])")
    rp.add_argument("--data-root", help="folder the card's data paths are relative to")
    rp.add_argument("--only", help="only entries whose name matches this shell pattern")
    rp.add_argument("--epochs", type=_count(1), help="override every entry's epochs")
    rp.add_argument("--seeds", type=_seed_list, help="comma-separated seeds instead of the card's")
    rp.add_argument("--lines", action="store_true",
                    help="one line per epoch (default: silent runs)")
    rp.add_argument("--table-only", action="store_true",
                    help="train nothing; rewrite the table from finished runs")
    rp.add_argument("--jobs", "-j", type=_count(1), default=1,
                    help="runs (entries x seeds) at the same time, each in its own process "
                    "(default 1)")
    rp.add_argument("--devices", type=_device_list,
                    help="comma-separated GPU ids to spread the runs over (CUDA_VISIBLE_DEVICES)")


def _add_tune(sub):
    tu = sub.add_parser("tune", help="run a KerasTuner job")
    tu.add_argument("job", help="a shipped job's name (rnnreg list --jobs) or a TOML file")
    tu.add_argument("--quick", action="store_true", help="the job's quick variant")
    tu.add_argument("--out", help="tuner folder (default runs/tune-<job>)")
    tu.add_argument("--data-root", help="folder the job's data paths are relative to")
    tu.add_argument("--workers", type=_count(0), default=0,
                    help="KerasTuner's distributed mode: a chief oracle and N worker processes on "
                    "127.0.0.1")


def _add_figure(sub):
    fg = sub.add_parser("figure", help="draw one of the papers' figures (NAME.png and NAME.csv)")
    fg.add_argument("name", nargs="?", help="figure name (rnnreg figure --list)")
    fg.add_argument("--list", action="store_true", help="list the figures and what they draw from")
    fg.add_argument("--runs", nargs="+", default=[], metavar="DIR", help="run folders to draw from")
    fg.add_argument("--search", nargs="+", default=[], metavar="DIR",
                    help="search folders of `rnnreg tune` to draw from")
    fg.add_argument("--out", default="figures",
                    help="folder for NAME.png and NAME.csv (default figures)")
    fg.add_argument("--length", type=_count(2),
                    help="timesteps of the probe sequences (norm figures; default 1000)")
    fg.add_argument("--quick", action="store_true",
                    help="draw from tiny synthetic runs made in OUT/quick-inputs (seconds)")


def _add_data(sub):
    root_help = "the data root (default $RNNREG_DATA, else $KERAS_HOME/datasets/keras-rnnreg)"
    dt = sub.add_parser("data", help="the corpora: list them, or download a public one (opt-in; "
                        "every file's sha256 is checked)")
    dsub = dt.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    dsub.required = True
    dl = dsub.add_parser("list", help="every corpus: its path under the data root, whether it is "
                         "there, and where it comes from")
    dl.add_argument("--data-root", help=root_help)
    df = dsub.add_parser("fetch", help="download a corpus into the data root (nothing is kept "
                         "unless every file's hash is the catalog's)")
    df.add_argument("name", help="a corpus name (rnnreg data list)")
    df.add_argument("--data-root", help=root_help)
    df.add_argument("--mirror", metavar="URL",
                    help="a base URL (or a folder) under which each file is found by its own name")


def _count(minimum):
    """argparse type: an integer >= minimum."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= {minimum}")
        return value

    return parse


def _seed_list(text):
    parse = _count(0)
    seeds = [parse(part.strip()) for part in text.split(",")]
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: a seed appears twice")
    return seeds


def _device_list(text):
    devices = [part.strip() for part in text.split(",")]
    if not all(devices):
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated device ids, e.g. 0,1")
    return devices


def _printer(out):
    return lambda msg: print(msg, file=out, flush=True)


def _cmd_list(args, out):
    from keras_rnnreg import _shipped, zoo

    kind = "card" if args.cards else "job" if args.jobs else None
    if kind or args.keys:
        for line in _shipped.names(kind) if kind else zoo.describe_keys():
            print(line, file=out)
        return 0
    names = zoo.list_models(args.pattern)
    if not names:
        print(f"no zoo name matches {args.pattern!r}", file=out)
        return 1
    for name in names:
        if not args.long:
            print(name, file=out)
            continue
        c = zoo.get_config(name)
        number = "-" if c["paper"]["value"] is None else f"{c['paper']['value']:g}"
        print(f"{name:32s} {number:>7s}  {c['description']}  [{c['paper']['table']}]", file=out)
    return 0


def _cmd_show(args, out):
    from keras_rnnreg import zoo

    config = zoo.resolve(args.name, args.overrides) if args.overrides else zoo.get_config(args.name)
    print(json.dumps(config, indent=2), file=out)
    return 0


def _cmd_train(args, out):
    from keras_rnnreg import training

    verbose = 0 if args.quiet else (2 if args.lines or not sys.stdout.isatty() else 1)
    report = training.train(
        args.name, args.out or f"runs/{args.name}" + (f"-s{args.seed}" if args.seed else ""),
        data=args.data, data_root=args.data_root, epochs=args.epochs, seed=args.seed,
        overrides=args.overrides, resume=args.resume, distribute=args.distribute, verbose=verbose,
        log=_printer(out))
    return 0 if report else 1


def _cmd_evaluate(args, out):
    from keras_rnnreg import _runfolder, training

    result = training.evaluate_run(args.run_dir, args.data, args.data_root, args.split)
    print(json.dumps(_runfolder.jsonable(result), indent=2), file=out)
    return 0


def _cmd_reproduce(args, out):
    from keras_rnnreg.experiments import cards

    path = cards.reproduce(
        args.card, quick=args.quick, out_dir=args.out, data_root=args.data_root, only=args.only,
        epochs=args.epochs, seeds=args.seeds, verbose=2 if args.lines else 0, log=_printer(out),
        table_only=args.table_only, jobs=args.jobs, devices=args.devices, stream=out)
    print(f"table: {path}", file=out)
    failures = json.loads((path.parent / "results.json").read_text())["failures"]
    if failures:  # exit status 1: the card ran, but not every run finished
        runs = ", ".join(f"{f['key']} seed {f['seed']}" for f in failures)
        print(f"{len(failures)} run(s) failed ({runs}); their errors are in {path.parent}/"
              "results.json and the table; the same command retries them", file=out)
    return 1 if failures else 0


def _cmd_tune(args, out):
    from keras_rnnreg.tuning import jobs

    result = jobs.run_job(args.job, quick=args.quick, out_dir=args.out, data_root=args.data_root,
                          log=_printer(out), workers=args.workers)
    print(json.dumps(result, indent=2), file=out)
    return 0


def _cmd_data(args, out):
    from keras_rnnreg.data import catalog

    root = catalog.data_root(args.data_root)
    if args.action == "list":
        for name, corpus in catalog.CORPORA.items():
            there = "present" if (root / corpus.path).exists() else "missing"
            print(f"{name:14} {there:8} {root / corpus.path}  ({corpus.origin})", file=out)
        return 0
    try:
        print(catalog.fetch(args.name, data_root=root, mirror=args.mirror), file=out)
    except (ValueError, OSError) as err:  # an unknown name, a refused hash, a failed download
        print(f"rnnreg data fetch: error: {_one_line(err)}", file=sys.stderr)
        return 2
    return 0


def _cmd_figure(args, out):
    from keras_rnnreg import figures

    if args.list:
        for f in figures.FIGURES.values():
            print(f"{f.name:22s} {f.paper:30s} [{f.inputs}] {f.title}", file=out)
        return 0
    if not args.name:
        raise figures.FigureError("name a figure (rnnreg figure --list names them) or pass --list")
    options = {} if args.length is None else {"length": args.length}
    if args.quick:
        if args.runs or args.search or options:
            raise figures.FigureError("--quick draws from its own tiny runs; drop --runs, "
                                      "--search and --length")
        result = figures.draw_quick(args.name, args.out)
    else:
        result = figures.draw(args.name, args.out, runs=args.runs, searches=args.search, **options)
    print(f"{result['png']}\n{result['csv']} ({len(result['rows'])} rows)", file=out)
    return 0


COMMANDS = {"list": _cmd_list, "show": _cmd_show, "train": _cmd_train, "evaluate": _cmd_evaluate,
            "reproduce": _cmd_reproduce, "tune": _cmd_tune, "figure": _cmd_figure,
            "data": _cmd_data}


def user_errors():
    """The exception classes a user's input can cause (one line, exit 2); the rest are bugs."""
    from keras_rnnreg.distribute import DistributeError
    from keras_rnnreg.figures import FigureError
    from keras_rnnreg.training import RunError
    from keras_rnnreg.zoo import ConfigError, UnknownModelError
    from keras_rnnreg.zoo.tasks import DataError, DataNotFoundError

    return (ConfigError, UnknownModelError, RunError, DataError, DataNotFoundError,
            FileNotFoundError, DistributeError, FigureError)


def _one_line(err):
    text = " ".join(str(err).split())
    if isinstance(err, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1]  # KeyError quotes its message
    return text


def _backend_name():
    """The backend Keras will load ($KERAS_BACKEND, else keras.json), without importing Keras."""
    import os
    from pathlib import Path

    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        return json.loads((home / "keras.json").read_text()).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _quiet_tensorflow():
    """Import TensorFlow (when it is the backend) with its C++ start-up lines captured, unless
    ``TF_CPP_MIN_LOG_LEVEL`` is set; the lines are shown if the import fails."""
    import os
    import tempfile

    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules or (
            _backend_name() != "tensorflow"):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the platforms' start-up lines come here
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv=None, out=None):
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    _quiet_tensorflow()
    import keras_rnnreg

    keras_rnnreg._register()  # the package's classes, for the runs' .keras files
    expected = user_errors()
    try:
        return COMMANDS[args.command](args, out)
    except expected as err:
        if args.debug:
            raise
        print(f"rnnreg {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        from keras_rnnreg.training import RunInterrupted

        if isinstance(err, RunInterrupted) and args.command == "train":
            hint = _one_line(err)
        elif args.command in ("reproduce", "tune"):
            hint = ("interrupted; run the same command again to continue (finished runs and epochs "
                    "are kept)")
        else:
            hint = "interrupted"
        print(f"rnnreg {args.command}: {hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
