"""Experiments: many runs of the zoo at once.

:mod:`keras_rnnreg.experiments.cards` reads an experiment card (one per paper table, ``zoo/*.toml``
in the repository, shipped in the package) and reproduces it, its runs one after the other or in
child processes (:mod:`keras_rnnreg.experiments._parallel`); above the zoo and training, below the
tuner and the figures.
"""
