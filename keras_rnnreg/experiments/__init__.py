"""Experiments: many runs of the zoo at once, above the zoo and training, below the tuner.

:mod:`keras_rnnreg.experiments.cards` reproduces an experiment card (one per paper table,
``zoo/*.toml``), its runs in turn or in child processes (:mod:`keras_rnnreg.experiments._parallel`).
"""
