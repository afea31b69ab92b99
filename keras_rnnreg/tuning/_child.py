"""One process of a distributed search: ``python -m keras_rnnreg.tuning._child OUT`` (started by
:mod:`keras_rnnreg.tuning.distributed` with ``KERASTUNER_TUNER_ID`` set), running
:func:`keras_rnnreg.tuning.search.search` on ``OUT/job.json``; a module the package does not import.
"""

import argparse
import os
import signal
import sys
import traceback
from pathlib import Path

from keras_rnnreg import _processes, _runfolder
from keras_rnnreg.tuning import folder, search


def _exit_now(signum, frame):
    """SIGTERM: leave at once (a ``KeyboardInterrupt`` could be swallowed inside Keras' ``fit``)."""
    sys.stdout.flush()
    os._exit(130)


def _main(argv=None):
    p = argparse.ArgumentParser(
        description="one process of a distributed search (started by rnnreg tune)")
    p.add_argument("out", help="the tuner folder: its job.json holds the spec")
    p.add_argument("--data-root")
    args = p.parse_args(argv)

    signal.signal(signal.SIGTERM, _exit_now)
    _processes.stop_when_orphaned()
    spec = _runfolder.read_json(Path(args.out) / folder.JOB_FILE, "record of the search's job")
    search.search(spec["spec"], args.out, data_root=args.data_root,
                  log=lambda msg: print(msg, flush=True))
    return 0


if __name__ == "__main__":
    code = 1
    try:
        code = _main()
    except KeyboardInterrupt:
        code = 130
    except SystemExit as err:  # argparse
        code = err.code if isinstance(err.code, int) else 2
    except BaseException as err:  # the traceback, then one line that the parent reports
        traceback.print_exc()
        print(_processes.error_line(err), flush=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # KerasTuner's gRPC threads would keep the chief alive. Leaving at once loses nothing: the
        # state files are written atomically (search.py) and a running trial runs again later.
        os._exit(code)
