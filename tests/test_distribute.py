"""keras_rnnreg.distribute: data parallel on 4 simulated devices, two workers over 127.0.0.1.

Simulated devices must be configured before JAX / TensorFlow start, so those checks run in
subprocesses (``python -m tests.distribute_checks``, bounded in time, killed on failure) and this
module asserts on the JSON they write. JAX checks run only under KERAS_BACKEND=jax, TensorFlow ones
only under tensorflow; under torch the clear error is tested.
"""

import contextlib
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_rnnreg import distribute
from keras_rnnreg.tuning.distributed import free_port

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTRIBUTED = BACKEND in ("jax", "tensorflow")
needs_engine = pytest.mark.skipif(not DISTRIBUTED, reason=f"no distribution API on {BACKEND}")
DEVICES_TIMEOUT = 480
WORKER_TIMEOUT = 240


def _env(**extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KERAS_DISTRIBUTION_", "TF_CONFIG", "XLA_FLAGS"))
    }
    env["KERAS_BACKEND"] = BACKEND
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["JAX_PLATFORMS"] = "cpu"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra)
    return env


def _start(mode, out, env):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.distribute_checks", mode, str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(procs, timeout):
    """Wait for every process (one deadline for all); kill all of them on failure or timeout."""
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, log in zip(procs, logs):
        if p.returncode != 0:
            pytest.fail(f"{' '.join(p.args)} exited with {p.returncode}:\n{log[-4000:]}")


def _close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(
        np.asarray(a, "float64"), np.asarray(b, "float64"), rtol=rtol, atol=atol
    )


# ------------------------------------------------------------------------ 4 simulated devices
@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not DISTRIBUTED:
        pytest.skip(f"no distribution API on {BACKEND}")
    out = tmp_path_factory.mktemp("devices") / "devices.json"
    extra = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"} if BACKEND == "jax" else {}
    _finish([_start("devices", out, _env(**extra))], DEVICES_TIMEOUT)
    with open(out) as f:
        return json.load(f)


def test_four_simulated_replicas(report):
    assert report["replicas"] == 4


def test_deterministic_config_same_loss_metrics_and_gradients_on_1_and_4_devices(report):
    run = report["runs"]["deterministic"]
    for key in ("loss", "nll_per_timestep", "frame_accuracy"):
        _close(run["one"]["history"][key], run["many"]["history"][key])
    # the weights after two updates carry the gradients of both steps
    for a, b in zip(run["one"]["weights"], run["many"]["weights"]):
        _close(a, b, rtol=1e-4, atol=1e-5)


def test_norm_stabilizer_penalty_is_a_global_mean_not_a_sum_over_replicas(report):
    run = report["runs"]["deterministic"]
    one, many = run["one"]["history"], run["many"]["history"]
    penalty_one = np.subtract(one["loss"], one["nll_per_timestep"])
    penalty_many = np.subtract(many["loss"], many["nll_per_timestep"])
    assert penalty_one[-1] > 1.0  # large enough that 4x (a sum over replicas) would show
    _close(penalty_one, penalty_many, rtol=1e-4, atol=1e-4)  # loss - nll: float32 rounding of ~61


def test_nll_metrics_are_global_batch_means_with_unequal_weights_per_replica(report):
    run = report["runs"]["deterministic"]
    for key in ("nll_per_timestep", "frame_accuracy"):
        _close(run["one"]["evaluate_uneven"][key], run["many"]["evaluate_uneven"][key])


def test_weight_noise_and_dropconnect_draws_are_those_of_one_device(report):
    # WeightNoise(per="sequence") + DropConnect(per="timestep"): one draw per step (per timestep)
    # shared by every sequence of the global batch, on any number of replicas.
    run = report["runs"]["weight_draws"]
    _close(run["one"]["history"]["loss"], run["many"]["history"]["loss"])
    for a, b in zip(run["one"]["weights"], run["many"]["weights"]):
        _close(a, b, rtol=1e-4, atol=1e-5)


def test_per_example_dropout_draws(report):
    run = report["runs"]["dropout_per_example"]
    assert np.all(np.isfinite(run["many"]["history"]["loss"]))
    if BACKEND == "jax":  # drawn over the global batch: the numbers of one device
        _close(run["one"]["history"]["loss"], run["many"]["history"]["loss"])


def test_spectral_radius_limit_leaves_every_replica_with_identical_weights(report):
    s = report["spectral_limit"]
    assert s["copies"] == 4
    assert s["identical"] and s["all_variables_identical"]
    assert s["radius"] <= s["limit"] * 1.01


def test_checkpoint_saved_under_strategy_reloads_on_one_device(report):
    c = report["checkpoint"]
    assert c["weights_equal"] and c["single_device"]
    assert c["predict_max_diff"] < 1e-4


def test_rnnreg_train_distribute_data_parallel_first_epoch(report):
    one, many = report["cli"]["one"], report["cli"]["many"]
    assert one["status"] == many["status"] == 0
    _close(one["nll_per_timestep"], many["nll_per_timestep"])
    if BACKEND == "jax":  # a batch of 6 padded to 8: the loss stays the global-batch mean
        _close(one["loss"], many["loss"])


# --------------------------------------------------------------- two workers over 127.0.0.1
@needs_engine
def test_two_workers_on_loopback_agree_with_one_process(tmp_path):
    if BACKEND == "jax":
        address = f"127.0.0.1:{free_port()}"
        envs = [
            _env(
                KERAS_DISTRIBUTION_JOB_ADDRESSES=address,
                KERAS_DISTRIBUTION_NUM_PROCESSES="2",
                KERAS_DISTRIBUTION_PROCESS_ID=str(i),
            )
            for i in range(2)
        ]
    else:
        workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        envs = [
            _env(
                TF_CONFIG=json.dumps(
                    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
                )
            )
            for i in range(2)
        ]
    outs = [tmp_path / f"worker{i}.json" for i in range(2)]
    procs = [_start("reference", tmp_path / "reference.json", _env())]
    procs += [_start("worker", out, env) for out, env in zip(outs, envs)]
    _finish(procs, WORKER_TIMEOUT)
    with open(tmp_path / "reference.json") as f:
        reference = json.load(f)
    for i, out in enumerate(outs):
        with open(out) as f:
            worker = json.load(f)
        assert (worker["processes"], worker["process_id"], worker["replicas"]) == (2, i, 2)
        assert worker["sigterm_reaches_python"]  # no framework notifier swallows it afterwards
        for key in ("loss", "nll_per_timestep"):
            assert len(worker["history"][key]) == 2
            _close(reference["history"][key], worker["history"][key])
        for a, b in zip(reference["weights"], worker["weights"]):
            _close(a, b, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ errors, data
@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch backend only")
def test_torch_says_what_to_use_instead():
    from keras_rnnreg import cli, zoo

    for kind in distribute.KINDS:
        with pytest.raises(distribute.DistributeError, match="KERAS_BACKEND=jax.*tensorflow"):
            distribute.get(kind)
    with pytest.raises(distribute.DistributeError, match="no distribution API"):
        zoo.build("jsb_rnn_plain", units=4, distribute="data-parallel")
    assert (
        cli.main(
            [
                "train",
                "jsb_rnn_plain",
                "--data",
                "synthetic",
                "--distribute",
                "data-parallel",
                "--out",
                os.devnull,
            ]
        )
        == 2
    )


@needs_engine
def test_tpu_without_a_tpu_fails_clearly():
    with pytest.raises(distribute.DistributeError, match="tpu.*data-parallel"):
        distribute.get("tpu")


@needs_engine
def test_multi_worker_without_cluster_settings_fails_clearly(monkeypatch):
    for name in (
        "TF_CONFIG",
        "KERAS_DISTRIBUTION_JOB_ADDRESSES",
        "KERAS_DISTRIBUTION_NUM_PROCESSES",
        "KERAS_DISTRIBUTION_PROCESS_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        distribute.DistributeError, match="TF_CONFIG|KERAS_DISTRIBUTION_JOB_ADDRESSES"
    ):
        distribute.get("multi-worker")


def test_unknown_kind():
    with pytest.raises(distribute.DistributeError, match="data-parallel, tpu, multi-worker"):
        distribute.get("model-parallel")


class _Batches(keras.utils.PyDataset):
    def __init__(self, batches):
        super().__init__()
        self.batches = batches
        self.epochs_ended = 0

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_sharded_batches_pad_with_zero_weights_and_split_between_processes():
    x = np.arange(6 * 2, dtype="float32").reshape(6, 2)
    y, w = x + 100, np.ones((6, 3), "float32")
    inner = _Batches([(x, y, w)])
    padding_warning = (
        pytest.warns(UserWarning, match="padded to 8")
        if BACKEND == "tensorflow"
        else (contextlib.nullcontext())
    )
    with padding_warning:  # on TF the padded rows bias the loss (the mean of replica means)
        xs, ys, ws = distribute.ShardedBatches(inner, replicas=4)[0]
    assert xs.shape == (8, 2) and ys.shape == (8, 2) and ws.shape == (8, 3)
    np.testing.assert_array_equal(ws[6:], 0.0)
    np.testing.assert_array_equal(xs[:6], x)
    parts = [
        distribute.ShardedBatches(inner, replicas=4, processes=2, process_id=i)[0] for i in range(2)
    ]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), xs)
    distribute.ShardedBatches(inner, replicas=4).on_epoch_end()
    assert inner.epochs_ended == 1
    with pytest.raises(distribute.DistributeError, match="batch_size=8"):
        distribute.ShardedBatches(_Batches([(x, y)]), replicas=4)[0]
