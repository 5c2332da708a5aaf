"""Local multi-worker training: N `python -m research.train` processes on this machine.

    python -m research.launch --workers 2 -- --config smoke --workdir runs/mw

Starts N workers of tf.distribute.MultiWorkerMirroredStrategy, each with its own
TF_CONFIG (a cluster of N `localhost:PORT` workers on free ports, this worker's index),
all running the same research.train arguments with `distribute="multi_worker"` added.
Worker 0 is the chief: its output (log lines, progress) is streamed here as it comes.
The other workers' output is kept: appended to `--log-dir/worker-<i>.log` when given,
and its last lines printed, prefixed `[worker i]`, if that worker fails.

When a worker exits non-zero the launcher names it, gives the others a few seconds to
fail on their own (TF's coordination service aborts their collectives about 10 s after
a worker stops sending heartbeats), then stops them (SIGTERM, then SIGKILL).
`start_workers`, `supervise` and `stop_workers` are also what the kill-and-resume checks
(research.reliability) and the multi-worker tests run workers with: every wait is
bounded, and every started process has ended when `supervise` returns. The
launcher's exit status is the chief's (0, or 1 for an error, 130 for a polite stop);
1 when the chief had to be stopped. Ctrl-C (SIGINT) or SIGTERM to the launcher is
passed to every worker: they agree on a step, write a checkpoint there and exit 130.

On a real cluster there is no launcher: run the research.train command on every host
with that host's TF_CONFIG (docs/distributed.md).
"""
import argparse
import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from research import cli

TRAIN_COMMAND = (sys.executable, "-m", "research.train")
TAIL_LINES = 40


def free_ports(count, host="localhost"):
    """`count` distinct TCP ports free on `host` right now (bound together, then released).

    Another program may take one before the worker binds it; then that worker fails
    at start and the launcher says so.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_configs(addresses):
    """TF_CONFIG JSON strings, one per worker, for a cluster of `addresses` ("host:port")."""
    cluster = {"worker": list(addresses)}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            for index in range(len(addresses))]


class Worker:
    """One started worker process: its index, `process`, and its output lines so far.

    `tf_config`: the TF_CONFIG JSON of this worker, or None for a process on its own.
    `exited_at`: time.monotonic() when its exit was first seen (`poll`), else None.
    `stopped_by_launcher`: whether `stop_workers` had to end it.
    """

    def __init__(self, index, command, tf_config, env=None, cwd=None, on_line=None, log_path=None):
        self.index = index
        self.tail = collections.deque(maxlen=TAIL_LINES)
        self.lines_seen = 0
        self.stopped_by_launcher = False
        self.exited_at = None
        environment = dict(os.environ if env is None else env)
        environment["PYTHONUNBUFFERED"] = "1"
        if tf_config is not None:
            environment["TF_CONFIG"] = tf_config
        # A session of its own: a Ctrl-C in the terminal reaches the launcher only,
        # which passes it on to every worker once.
        # The log first (a launch that cannot write it starts no process), appended to: a
        # relaunch to resume keeps what the workers of the crashed launch wrote.
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None
        if self._log:
            self._log.write(f"=== launched {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(command)}\n")
            self._log.flush()
        self.process = subprocess.Popen(list(command), env=environment, cwd=cwd, text=True,
                                        errors="replace", stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = threading.Thread(target=self._read, args=(on_line,), daemon=True)
        self._reader.start()

    def _read(self, on_line):
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            self.lines_seen += 1
            if self._log:
                self._log.write(line + "\n")
                self._log.flush()
            if on_line:
                on_line(self.index, line)

    def poll(self):
        """The process's exit code, or None while it runs; notes `exited_at`."""
        code = self.process.poll()
        if code is not None and self.exited_at is None:
            self.exited_at = time.monotonic()
        return code

    def signal(self, signum):
        """Sends `signum` unless the process has exited; returns whether it was sent."""
        if self.poll() is None:
            try:
                self.process.send_signal(signum)
                return True
            except ProcessLookupError:
                pass
        return False

    def close(self, timeout=10.0):
        """Waits for the output reader after the process ended; closes the log file."""
        self._reader.join(timeout)
        if self._log:
            self._log.close()


def start_workers(commands, env=None, cwd=None, on_line=None, log_dir=None, host="localhost"):
    """Starts one process per command (worker i runs commands[i]) with its TF_CONFIG.

    Returns the list of `Worker`s. `on_line(index, line)` is called from reader threads.
    """
    ports = free_ports(len(commands), host)
    configs = tf_configs([f"{host}:{port}" for port in ports])
    workers = []
    try:
        for index, (command, tf_config) in enumerate(zip(commands, configs)):
            log_path = os.path.join(log_dir, f"worker-{index}.log") if log_dir else None
            workers.append(Worker(index, command, tf_config, env, cwd, on_line, log_path))
    except BaseException:
        stop_workers(workers, grace=0.0)
        raise
    return workers


def stop_workers(workers, grace=10.0):
    """SIGTERM every running worker, SIGKILL those still running after `grace` s; waits."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.stopped_by_launcher = True
            worker.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for worker in workers:
        try:
            worker.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
        worker.poll()
    for worker in workers:
        worker.close()


# research.train's exit status after SIGINT/SIGTERM, once its checkpoint is written.
STOPPED_STATUS = 130


def supervise(workers, fail_grace=5.0, stop_grace=10.0, timeout=None, poll=0.1, report=None,
              stopping=lambda: False):
    """Waits for the workers; when one exits non-zero, stops the rest.

    After the first failure the others get `fail_grace` s to exit on their own (they
    normally fail too), then `stop_workers(stop_grace)`. With `timeout` (s), every
    worker still running then is stopped and counted as failed. Whoever had to be
    stopped has `stopped_by_launcher` set, and `report` got a line saying why; every
    worker's `exited_at` is set on return. Once `stopping()` is
    true (the launcher passed a SIGINT/SIGTERM on), a worker's STOPPED_STATUS is what was
    asked for, not a failure: the others, the chief still writing the stop checkpoint
    among them, are left to finish (a SIGTERM then would cut that write short).

    Returns:
      the index of the first worker that failed, or None when all exited 0.
    """
    report = report or (lambda message: None)
    start = time.monotonic()
    failed = None
    while True:
        codes = [worker.poll() for worker in workers]
        if failed is None:
            bad = [w for w, code in zip(workers, codes) if code not in (None, 0)
                   and not (code == STOPPED_STATUS and stopping())]
            if bad:
                failed = bad[0].index
                report(f"worker {failed} exited with status {codes[failed]}: stopping the other workers")
                failed_at = time.monotonic()
        if all(code is not None for code in codes):
            break
        running = [w.index for w, code in zip(workers, codes) if code is None]
        if failed is not None and time.monotonic() - failed_at > fail_grace:
            report(f"workers {running} still running {fail_grace:g} s after worker {failed} failed: "
                   "stopping them")
            stop_workers(workers, stop_grace)
            break
        if timeout is not None and time.monotonic() - start > timeout:
            report(f"workers {running} still running after {timeout:.0f} s: stopping them")
            stop_workers(workers, stop_grace)
            failed = running[0] if failed is None else failed
            break
        time.sleep(poll)
    for worker in workers:
        worker.close()
    return failed


def exit_status(worker):
    """A worker's status as a shell gives it (a signal N: 128 + N)."""
    code = worker.process.returncode
    return 128 - code if code < 0 else code


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m research.launch",
        description="Run research.train with N local workers of tf.distribute.MultiWorkerMirroredStrategy "
                    "(TF_CONFIG per worker, free localhost ports). Streams worker 0's (the chief's) output; "
                    "stops all workers when one fails; exits with the chief's status.",
        usage="python -m research.launch --workers N [--log-dir DIR] -- <research.train arguments>")
    parser.add_argument("--workers", type=int, required=True, help="number of worker processes (>= 1)")
    parser.add_argument("--log-dir", default=None,
                        help="also append every worker's output to DIR/worker-<i>.log (a header per launch) "
                             "(default: only the chief's is shown; others' last lines if they fail)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="-- then the research.train arguments (--config, --workdir, --set ...)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    args.train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    if not args.train_args:
        parser.error("give the research.train arguments after --")
    return args


def main(argv=None):
    args = parse_args(argv)
    return cli.run_main(lambda: run(args.workers, args.train_args, args.log_dir))


@contextlib.contextmanager
def _forwarding_signals(workers, report):
    """While open, SIGINT and SIGTERM to the launcher go to every worker instead; yields a
    threading.Event set once one came. The previous handlers are put back on exit."""
    forwarded = threading.Event()

    def forward(signum, frame):
        report(f"received {signal.Signals(signum).name}: passing it to every worker")
        forwarded.set()
        for worker in workers:
            worker.signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield forwarded
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(count, train_args, log_dir=None):
    """Runs `research.train train_args` on `count` local workers (module doc); returns the
    launcher's exit status."""
    train_args = list(train_args) + ["--set", "distribute=multi_worker"]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    out_lock = threading.Lock()

    def on_line(index, line):
        if index == 0:
            with out_lock:
                print(line, flush=True)

    def report(message):
        with out_lock:
            print(f"launch: {message}", file=sys.stderr, flush=True)

    workers = start_workers([TRAIN_COMMAND + tuple(train_args)] * count, on_line=on_line, log_dir=log_dir)
    report(f"{count} worker(s), pids {', '.join(str(w.process.pid) for w in workers)}; "
           f"streaming worker 0 (chief)" + (f"; all logs in {log_dir}" if log_dir else ""))

    with _forwarding_signals(workers, report) as forwarded:
        try:
            failed = supervise(workers, report=report, stopping=forwarded.is_set)
        finally:
            if any(w.process.poll() is None for w in workers):
                stop_workers(workers, grace=0.0)
    chief = workers[0]
    if failed is not None and failed != 0:
        worker = workers[failed]
        report(f"worker {failed} failed (status {exit_status(worker)}); its last lines:")
        for line in worker.tail:
            report(f"[worker {failed}] {line}")
    if chief.stopped_by_launcher:
        report(f"the chief was stopped after worker {failed} failed: exit 1")
        return 1
    status = exit_status(chief)
    report(f"chief exited with status {status}")
    return status


if __name__ == "__main__":
    sys.exit(main())
