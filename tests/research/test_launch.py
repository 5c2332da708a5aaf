"""research.launch's plumbing (no TensorFlow in the workers) and runtime.worker_role."""
import json
import sys

import pytest

from research import launch, runtime


def test_free_ports_and_tf_configs():
    ports = launch.free_ports(3)
    assert len(set(ports)) == 3 and all(p > 0 for p in ports)
    configs = [json.loads(c) for c in launch.tf_configs(["localhost:1", "localhost:2"])]
    assert configs[1] == {"cluster": {"worker": ["localhost:1", "localhost:2"]},
                          "task": {"type": "worker", "index": 1}}
    roles = [runtime.worker_role("multi_worker", {"TF_CONFIG": json.dumps(c)}) for c in configs]
    assert [(r.index, r.count, r.is_chief) for r in roles] == [(0, 2, True), (1, 2, False)]


def test_worker_role_reads_tf_config_only_for_multi_worker():
    chief_and_worker = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
                                   "task": {"type": "worker", "index": 0}})
    assert runtime.worker_role("multi_worker", {"TF_CONFIG": chief_and_worker}) == runtime.WorkerRole(1, 3)
    assert runtime.worker_role("default", {"TF_CONFIG": chief_and_worker}) == runtime.WorkerRole(0, 1)
    assert runtime.worker_role("multi_worker", {}) == runtime.WorkerRole(0, 1)
    with pytest.raises(ValueError, match="TF_CONFIG is not a valid"):
        runtime.worker_role("multi_worker", {"TF_CONFIG": "{not json"})
    with pytest.raises(ValueError, match="task worker 5 is not in its cluster"):
        runtime.worker_role("multi_worker", {"TF_CONFIG": json.dumps(
            {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 5}})})


def test_a_failing_worker_stops_the_others_and_is_named():
    # Worker 1 fails at once; worker 0 would run for 120 s, so only the launcher ends it.
    script = ("import json, os, sys, time; index = json.loads(os.environ['TF_CONFIG'])['task']['index']; "
              "print('worker', index, flush=True); index == 1 or time.sleep(120); sys.exit(3)")
    workers = launch.start_workers([[sys.executable, "-c", script]] * 2)
    messages = []
    try:
        failed = launch.supervise(workers, fail_grace=0.5, stop_grace=5.0, timeout=60, report=messages.append)
    finally:
        launch.stop_workers(workers, grace=0.0)
    assert failed == 1
    assert messages == ["worker 1 exited with status 3: stopping the other workers",
                        "workers [0] still running 0.5 s after worker 1 failed: stopping them"]
    assert workers[1].exited_at < workers[0].exited_at
    assert workers[0].stopped_by_launcher and workers[0].process.returncode != 0
    assert list(workers[1].tail) == ["worker 1"]
    assert launch.exit_status(workers[1]) == 3


def test_worker_logs_are_appended_launch_after_launch(tmp_path):
    for launch_number in (1, 2):
        script = f"print('launch {launch_number}', flush=True)"
        workers = launch.start_workers([[sys.executable, "-c", script]], log_dir=str(tmp_path))
        try:
            assert launch.supervise(workers, fail_grace=0.5, stop_grace=5.0, timeout=60, report=print) is None
        finally:
            launch.stop_workers(workers, grace=0.0)
    lines = (tmp_path / "worker-0.log").read_text().splitlines()
    assert [line for line in lines if not line.startswith("=== launched ")] == ["launch 1", "launch 2"]
    assert sum(line.startswith("=== launched ") for line in lines) == 2


@pytest.mark.parametrize("stopping", [False, True])
def test_a_worker_stopped_as_asked_is_no_failure(tmp_path, stopping):
    # After a forwarded Ctrl-C every worker exits 130 once its stop checkpoint is written;
    # here worker 1 first while the chief still writes. The chief exits only once the
    # supervisor has seen worker 1's exit (a file handshake, no sleep ordering): it asks
    # `stopping()` about a 130 only then. Only when no stop was asked is that a failure
    # that ends the chief.
    go = tmp_path / "chief-may-exit"
    script = ("import json, os, sys, time; index = json.loads(os.environ['TF_CONFIG'])['task']['index']; "
              f"go = {str(go)!r}; deadline = time.monotonic() + 60\n"
              "while index == 0 and not os.path.exists(go) and time.monotonic() < deadline: time.sleep(0.01)\n"
              "sys.exit(130)")
    workers = launch.start_workers([[sys.executable, "-c", script]] * 2)

    def asked_to_stop():
        if stopping:
            go.touch()
        return stopping

    try:
        failed = launch.supervise(workers, fail_grace=0.2, stop_grace=5.0, timeout=60, stopping=asked_to_stop)
    finally:
        launch.stop_workers(workers, grace=0.0)
    if stopping:
        assert failed is None and not workers[0].stopped_by_launcher
        assert launch.exit_status(workers[0]) == launch.STOPPED_STATUS
        assert workers[1].exited_at <= workers[0].exited_at
    else:
        assert failed == 1 and workers[0].stopped_by_launcher


def test_command_line_help_and_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["--help"])
    assert exit_info.value.code == 0
    assert "--workers" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        launch.main(["--workers", "2"])
    assert "research.train arguments" in capsys.readouterr().err
