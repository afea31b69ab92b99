"""``python -m keras_rnnreg``: the ``rnnreg`` command line."""

from keras_rnnreg.cli import main

raise SystemExit(main())
