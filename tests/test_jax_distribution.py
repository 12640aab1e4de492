"""keras.distribution on the JAX backend: DataParallel over 2 CPU devices,
and 2 real processes joined with `keras.distribution.initialize` (JAX's
gloo collectives on localhost), each compared with the single-device run.

Every run is a real process (`tests.distributed_training`): the backend
and the device count are fixed per process.
"""

import os
import socket
import subprocess
import sys

import pytest

from tb_gradients.analysis import reader

from tests import series_compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300


def _command(logdir, *args):
    return [sys.executable, "-m", "tests.distributed_training", str(logdir),
            *args]


def _environment():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("XLA_FLAGS", None)
    return env


def _train(logdir, *args):
    completed = subprocess.run(_command(logdir, *args), cwd=ROOT,
                               env=_environment(), capture_output=True,
                               text=True, timeout=TIMEOUT)
    assert completed.returncode == 0, completed.stderr[-4000:]


def _free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("single") / "logs"
    _train(logdir, "--mode", "single")
    return reader.load_runs(str(logdir))


def test_data_parallel_over_two_devices_equals_one_device(single,
                                                          tmp_path):
    logdir = tmp_path / "logs"
    _train(logdir, "--mode", "devices")
    recorded = reader.load_runs(str(logdir))
    assert set(recorded["train"].sources) == {"training", "probe"}
    assert list(recorded["train"].sources["training"].steps) == [3, 6, 9, 12]
    series_compare.assert_same_recording(recorded, single)
    # a distribution that shards the variables is refused, by name
    refused = (tmp_path / "model_parallel_error.txt").read_text()
    assert "distribution=ModelParallel" in refused, refused
    assert "DataParallel" in refused


def test_two_processes_write_once_and_equal_one_process(single, tmp_path):
    logdir = tmp_path / "logs"
    port = _free_port()
    processes = [subprocess.Popen(
        _command(logdir, "--mode", "process", "--process-id", str(index),
                 "--port", str(port)),
        cwd=ROOT, env=_environment(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for index in (0, 1)]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-4000:]

    # only process 0 wrote: one event file, named with its pid
    chief = (tmp_path / "pid-0.txt").read_text()
    written = sorted(str(path.relative_to(logdir))
                     for path in logdir.rglob("*") if path.is_file())
    events = [name for name in written if "tfevents" in name]
    assert len(events) == 1 and f".{chief}." in events[0], written
    assert all(name.startswith(("train/", "gradient_state/"))
               for name in written), written
    series_compare.assert_same_recording(reader.load_runs(str(logdir)),
                                         single)
