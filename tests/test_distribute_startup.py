"""keras_rnnreg.distribute: multi-worker cluster start-up (bad settings, timeouts, signals).

Settings are checked before JAX / TensorFlow are touched, so those cases run in-process through
``rnnreg train ... --distribute multi-worker`` (``cli.main``). Waiting for a cluster is about
processes: those cases start ``python -m tests.distribute_checks startup`` (or ``rnnreg``) over
127.0.0.1, with a port that nothing listens on, and time them from its ``READY`` line. JAX cases
run under KERAS_BACKEND=jax, TF_CONFIG ones under tensorflow; PyTorch has no multi-worker kind.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import keras
import pytest

from keras_rnnreg import cli, distribute
from keras_rnnreg.tuning.distributed import free_port
from tests.test_distribute import ROOT, _env

BACKEND = keras.backend.backend()
jax_only = pytest.mark.skipif(BACKEND != "jax", reason="KERAS_DISTRIBUTION_* are JAX's settings")
tf_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="TF_CONFIG is TensorFlow's setting")
TIMEOUT = 3  # seconds: RNNREG_CLUSTER_TIMEOUT in the tests that wait it out
SLACK = 30  # seconds beyond it that a loaded 2-core machine may take to report
STARTUP = 180  # seconds a test process may take to import Keras and get to READY
TRAIN = ["train", "jsb_rnn_plain", "--data", "synthetic", "--set", "model.units=4", "--epochs",
         "1", "--distribute", "multi-worker", "--quiet"]
CLUSTER_VARIABLES = ("TF_CONFIG", "KERAS_DISTRIBUTION_JOB_ADDRESSES",
                     "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID",
                     distribute.TIMEOUT_VARIABLE)


def _jax(address, n=2, pid=1, **extra):
    return {"KERAS_DISTRIBUTION_JOB_ADDRESSES": address, "KERAS_DISTRIBUTION_NUM_PROCESSES": str(n),
            "KERAS_DISTRIBUTION_PROCESS_ID": str(pid), **extra}


def _tf(workers, index=0, **extra):
    config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    return {"TF_CONFIG": json.dumps(config), **extra}


# ------------------------------------------------------------------ bad settings: one line, exit 2
JAX_CASES = {
    "processes not a number": (_jax("127.0.0.1:1234", n="abc"),
                               "KERAS_DISTRIBUTION_NUM_PROCESSES='abc': expected a whole number"),
    "no processes": (_jax("127.0.0.1:1234", n=0),
                     "KERAS_DISTRIBUTION_NUM_PROCESSES='0': expected a whole number >= 1"),
    "id past the count": (_jax("127.0.0.1:1234", pid=5), "KERAS_DISTRIBUTION_PROCESS_ID='5': "
                          "expected a whole number from 0 to 1 (KERAS_DISTRIBUTION_NUM_PROC"),
    "negative id": (_jax("127.0.0.1:1234", pid=-1),
                    "KERAS_DISTRIBUTION_PROCESS_ID='-1': expected a whole number from 0 to 1"),
    "not an address": (_jax("not-an-address"),
                       "KERAS_DISTRIBUTION_JOB_ADDRESSES='not-an-address': expected host:port"),
    "no port": (_jax("127.0.0.1"), "KERAS_DISTRIBUTION_JOB_ADDRESSES='127.0.0.1': expected"),
    "port out of range": (_jax("127.0.0.1:99999"), "'127.0.0.1:99999': expected host:port with a "
                          "port from 1 to 65535"),
    "addresses for another count": (_jax("a:1,b:2,c:3"), "KERAS_DISTRIBUTION_JOB_ADDRESSES='a:1,"
                                    "b:2,c:3' lists 3 addresses for KERAS_DISTRIBUTION_NUM_"),
    "timeout not a number": (_jax("127.0.0.1:1234", RNNREG_CLUSTER_TIMEOUT="soon"),
                             "RNNREG_CLUSTER_TIMEOUT='soon': expected a number of seconds > 0"),
    "timeout zero": (_jax("127.0.0.1:1234", RNNREG_CLUSTER_TIMEOUT="0"),
                     "RNNREG_CLUSTER_TIMEOUT='0': expected a number of seconds > 0"),
}
TWO = ["127.0.0.1:2222", "127.0.0.1:2223"]
TF_CASES = {
    "malformed JSON": ({"TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:2222"]'},
                       "TF_CONFIG='{\"cluster\"" + ': {"worker": ["127.0.0.1:2222"]\' is not JSON'),
    "not an object": ({"TF_CONFIG": "[1, 2]"}, "TF_CONFIG='[1, 2]': expected a 'cluster'"),
    "empty cluster": ({"TF_CONFIG": '{"cluster": {}, "task": {"type": "worker", "index": 0}}'},
                      "expected a 'cluster' naming the workers' addresses"),
    "index out of range": (_tf(TWO, index=2), "TF_CONFIG task.index (a worker)=2: expected a "
                           "whole number from 0 to 1"),
    "negative index": (_tf(TWO, index=-1), "TF_CONFIG task.index (a worker)=-1: expected"),
    "unknown task type": ({"TF_CONFIG": json.dumps({"cluster": {"worker": TWO},
                                                    "task": {"type": "ps", "index": 0}})},
                          "TF_CONFIG task={'type': 'ps', 'index': 0}: expected {'type': one of "
                          "'worker', 'index': N}"),
    "no task": ({"TF_CONFIG": json.dumps({"cluster": {"worker": TWO}})},
                "TF_CONFIG task=None: expected"),
    "address without a port": (_tf(["127.0.0.1:2222", "127.0.0.1"]),
                               "TF_CONFIG cluster.worker[1]='127.0.0.1': expected host:port"),
    "job of another strategy": ({"TF_CONFIG": json.dumps({"cluster": {"worker": TWO,
                                                                      "ps": ["127.0.0.1:2224"]},
                                                          "task": {"type": "worker", "index": 0}})},
                                "TF_CONFIG cluster job 'ps': expected 'worker'"),
    "workers not a list": ({"TF_CONFIG": json.dumps({"cluster": {"worker": "127.0.0.1:2222"},
                                                     "task": {"type": "worker", "index": 0}})},
                           "TF_CONFIG cluster.worker='127.0.0.1:2222': expected a list"),
    "one address twice": (_tf(["127.0.0.1:2222", "127.0.0.1:2222"]),
                          "cluster.worker[1] and cluster.worker[0] are both '127.0.0.1:2222'"),
    "timeout negative": (_tf(TWO, RNNREG_CLUSTER_TIMEOUT="-5"),
                         "RNNREG_CLUSTER_TIMEOUT='-5': expected a number of seconds > 0"),
}
CASES = JAX_CASES if BACKEND == "jax" else TF_CASES if BACKEND == "tensorflow" else {}


@pytest.fixture
def no_cluster(monkeypatch):
    for name in CLUSTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("case", sorted(CASES))  # this backend's settings (none on torch)
def test_a_bad_cluster_setting_is_one_line_with_exit_2(case, no_cluster, tmp_path, capsys):
    env, expected = CASES[case]
    for name, value in env.items():
        no_cluster.setenv(name, value)
    out = tmp_path / "run"
    assert cli.main([*TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rnnreg train: error: "), err
    assert expected in err
    assert not out.exists()  # refused before the run folder


@pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"), reason=f"no distribution on {BACKEND}")
def test_bad_arguments_of_get_are_named(no_cluster):
    no_cluster.setenv("TF_CONFIG", _tf(TWO)["TF_CONFIG"])
    with pytest.raises(distribute.DistributeError, match=r"^timeout=0: expected a number of sec"):
        distribute.get("multi-worker", job_addresses="127.0.0.1:1234", num_processes=2,
                       process_id=0, timeout=0)
    if BACKEND == "jax":
        with pytest.raises(distribute.DistributeError,
                           match=r"^num_processes=True: expected a whole number >= 1"):
            distribute.get("multi-worker", job_addresses="127.0.0.1:1234", num_processes=True,
                           process_id=0)
        with pytest.raises(distribute.DistributeError,
                           match=r"^process_id=2: expected a whole number from 0 to 1 "
                                 r"\(num_processes=2\)"):
            distribute.get("multi-worker", job_addresses="h:1", num_processes=2, process_id=2)


def test_the_handlers_from_before_the_frameworks_call_are_put_back():
    """A stand-in for a framework that installs a SIGTERM handler of its own (a "preemption
    notifier") in its connection call: afterwards SIGTERM reaches the handler from before."""
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append("ours"))
    try:
        with distribute._own_signal_handlers():
            signal.signal(signal.SIGTERM, lambda signum, frame: seen.append("framework's"))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert seen == ["ours"]
    finally:
        signal.signal(signal.SIGTERM, previous)


@jax_only
def test_keras_private_initialize_rng_is_what_keras_calls_after_jax_distributed():
    """The contract of ``_backend.keras_after_jax_distributed_initialize``."""
    import inspect

    from keras.src.backend.jax import distribution_lib

    source = inspect.getsource(distribution_lib.initialize)
    assert "jax.distributed.initialize(" in source and "initialize_rng()" in source


@tf_only
def test_tf_strategy_configures_the_coordination_service_only_when_unset():
    """The contract of ``_backend.tf_bound_cluster_registration``."""
    import inspect

    from tensorflow.python.distribute import collective_all_reduce_strategy as car

    source = inspect.getsource(car.CollectiveAllReduceExtended._initialize_multi_worker)
    assert "context.context().coordination_service is None" in source


# ------------------------------------------------------------- waiting for a cluster (processes)
def _start(env, argv=("-m", "tests.distribute_checks", "startup", os.devnull)):
    def default_sigint():  # a child of a background job may inherit SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    env = _env(TF_CPP_MIN_LOG_LEVEL="3", **env)
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


def _ready(proc):
    """Wait for READY on stdout; returns the time it came."""
    timer = threading.Timer(STARTUP, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            if line.strip() == "READY":
                return time.monotonic()
    finally:
        timer.cancel()
    pytest.fail(f"no READY line (exit {proc.wait()}): {proc.stderr.read()[-3000:]}")


def _end(proc, limit):
    """``(exit status, stderr)``; fails (and kills it) if it runs past ``limit`` seconds."""
    try:
        _, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running after {limit} s: {proc.communicate()[1][-3000:]}")
    return proc.returncode, err


def _fails_in_time(env, *expected):
    proc = _start({**env, distribute.TIMEOUT_VARIABLE: str(TIMEOUT)})
    ready = _ready(proc)
    status, err = _end(proc, TIMEOUT + SLACK)
    elapsed = time.monotonic() - ready
    assert status == 2, err[-3000:]
    message = err.strip().splitlines()[-1]
    for text in (f"within {TIMEOUT} s", *expected):
        assert text in message
    assert TIMEOUT - 0.5 <= elapsed <= TIMEOUT + SLACK


@jax_only
def test_unreachable_jax_coordinator_fails_within_the_timeout_naming_it():
    address = f"127.0.0.1:{free_port()}"
    _fails_in_time(_jax(address, pid=1), f"the JAX coordinator {address} "
                   "(KERAS_DISTRIBUTION_JOB_ADDRESSES) did not answer", "(Connection refused)",
                   "this is process 1 of 2")


@jax_only
def test_jax_coordinator_whose_peer_never_comes_fails_within_the_timeout():
    address = f"127.0.0.1:{free_port()}"
    _fails_in_time(_jax(f"{address},127.0.0.1:{free_port()}", pid=0),
                   "process 1 (127.0.0.1:", f"of 2 did not connect to this coordinator {address}")


@tf_only
def test_unreachable_tf_peer_fails_within_the_timeout_naming_it():
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    _fails_in_time(_tf(workers, index=0), f"TF_CONFIG's worker 1 at {workers[1]} "
                   "(Connection refused) did not answer", "(this is worker 0)")


def _unreachable():
    """Settings whose peer (JAX: the coordinator; TF: worker 0) nothing listens for, and its
    address."""
    address = f"127.0.0.1:{free_port()}"
    if BACKEND == "jax":
        return _jax(address, pid=1), address
    return _tf([address, f"127.0.0.1:{free_port()}"], index=1), address


@pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"), reason=f"no distribution on {BACKEND}")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_the_wait_stops_the_process_at_once(signum):
    proc = _start({**_unreachable()[0], distribute.TIMEOUT_VARIABLE: "600"})
    _ready(proc)
    time.sleep(2)  # inside the wait
    sent = time.monotonic()
    proc.send_signal(signum)
    status, err = _end(proc, SLACK)
    assert time.monotonic() - sent < 15
    # SIGTERM: the default action; SIGINT: KeyboardInterrupt (the CLI's exit status 130)
    assert status == (-signal.SIGTERM if signum == signal.SIGTERM else 130), err[-3000:]


@pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"), reason=f"no distribution on {BACKEND}")
def test_rnnreg_train_reports_an_unreachable_cluster_in_one_line(tmp_path):
    env, address = _unreachable()
    out = tmp_path / "run"
    proc = _start({**env, distribute.TIMEOUT_VARIABLE: str(TIMEOUT)},
                  ["-m", "keras_rnnreg.cli", *TRAIN, "--out", str(out)])
    status, err = _end(proc, STARTUP + TIMEOUT + SLACK)
    ours = [line for line in err.splitlines() if line.startswith("rnnreg")]
    assert status == 2 and len(ours) == 1, err[-3000:]
    assert ours[0].startswith("rnnreg train: error: cluster start-up: ")
    assert address in ours[0] and f"within {TIMEOUT} s" in ours[0]
    assert not out.exists()


# ------------------------------------------ a peer that answers but never joins: the framework
class _FakePeer:
    """Listens on a port and, for JAX, answers the processes' hello with "go" (then closes, so
    that nothing serves the coordinator's port); for TF it only accepts connections. Either way
    the process under test gets past its own wait and into the framework's."""

    def __init__(self, jax):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.reached = threading.Event()
        self.jax = jax
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        with self.server:
            conn = self.server.accept()[0]
            with conn:
                if self.jax:
                    conn.recv(256)
                    conn.sendall(b"go\n")
                self.reached.set()
                time.sleep(0.5)


@pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"), reason=f"no distribution on {BACKEND}")
def test_a_peer_that_answers_but_never_joins_is_bounded_by_the_timeout():
    peer = _FakePeer(jax=BACKEND == "jax")
    if BACKEND == "jax":
        env = _jax(peer.address, pid=1)
    else:
        env = _tf([f"127.0.0.1:{free_port()}", peer.address], index=0)
    proc = _start({**env, distribute.TIMEOUT_VARIABLE: str(TIMEOUT)})
    _ready(proc)
    assert peer.reached.wait(TIMEOUT + SLACK)
    entered = time.monotonic()
    if BACKEND == "tensorflow":  # TF's call keeps the GIL and its SIGTERM notifier takes this
        time.sleep(1)  # one (before the fix only kill -9 ended such a wait): it still ends in time
        proc.send_signal(signal.SIGTERM)
    status, err = _end(proc, TIMEOUT + SLACK)
    assert time.monotonic() - entered <= TIMEOUT + SLACK
    if BACKEND == "jax":  # JAX ends the process itself (LOG(FATAL)) when its connect times out
        assert status == -signal.SIGABRT and "DEADLINE_EXCEEDED" in err, err[-3000:]
    else:
        assert status == 2, err[-3000:]
        assert (f"TF_CONFIG's worker 1 ({peer.address}) answered but did not join TensorFlow's "
                f"coordination service within {TIMEOUT} s") in err.strip().splitlines()[-1]
