"""The ``rnnreg`` command line (filled by the zoo issue)."""


def main(argv=None):
    raise SystemExit("rnnreg: the command line arrives with the model zoo.")
