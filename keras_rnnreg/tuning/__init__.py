"""Hyperparameter search over the zoo with KerasTuner (the only package importing ``keras_tuner``).

* :mod:`keras_rnnreg.tuning.spaces` — search spaces as data (the noise study's Table 2 ranges,
  the norm-stabilizer paper's grid), each hyperparameter tied to a configuration key;
* :class:`ZooHyperModel` — a ``keras_tuner.HyperModel`` over a zoo configuration: fixed arguments
  in ``__init__``, the space in ``build(hp)``, batch size / epochs in ``fit(hp, model, ...)``;
* :func:`run_job` — a tuner job spec (``tuning/*.toml``), what ``rnnreg tune JOB.toml`` runs.

```python
import keras_tuner
from keras_rnnreg.tuning import ZooHyperModel

hypermodel = ZooHyperModel("jsb_rnn_ns", space="noise_study_table2", data=splits, epochs=50)
tuner = keras_tuner.RandomSearch(hypermodel, objective=keras_tuner.Objective(
    "val_nll_per_timestep", "min"), max_trials=50)
tuner.search()
```
"""

from keras_rnnreg.tuning.hypermodels import ZooHyperModel
from keras_rnnreg.tuning.jobs import load_job, run_job
from keras_rnnreg.tuning.spaces import SPACES

__all__ = ["SPACES", "ZooHyperModel", "load_job", "run_job"]
