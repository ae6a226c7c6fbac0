"""The supervisor with real child processes: restarts with backoff, ordered stops, the state file,
and `foundry up` / `ps` / `down` refusing what makes no sense."""
from __future__ import annotations

import json
import os
import sys
import time

from click.testing import CliRunner

from foundry.cli import main
from foundry.supervisor import ProcessSpec, Supervisor, read_state

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
CRASHER = [sys.executable, "-c", "import os, sys; print('boom after', os.environ['FOUNDRY_RESTARTS'], 'restarts'); "
                                 "sys.exit(3)"]
# exits 0 on SIGTERM after writing a marker: proves the stop was a SIGTERM, not a kill
GRACEFUL = [sys.executable, "-c", "import signal, sys, time, pathlib\n"
            "def bye(*_):\n    pathlib.Path(sys.argv[1]).write_text('term')\n    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\nwhile True: time.sleep(0.1)"]


def test_a_dying_process_is_restarted_with_growing_backoff(tmp_path):
    sup = Supervisor(tmp_path, backoff_initial_s=0.2, backoff_max_s=0.8, stable_s=30)
    sup.add(ProcessSpec("crash", "worker", CRASHER))
    sup.add(ProcessSpec("steady", "sink", SLEEPER))
    sup.start()
    try:
        assert sup.wait_until(lambda: sup.children["crash"].restarts >= 3, timeout=30, every_s=0.05)
        crash = sup.children["crash"]
        assert crash.last_exit in (3, None)
        assert crash.backoff == 0.8  # 0.2 -> 0.4 -> 0.8, capped
        assert sup.children["steady"].restarts == 0
        log = (tmp_path / "supervisor.log").read_text()
        assert "crash exited with 3" in log and "restarted crash" in log
        out = (tmp_path / "logs" / "crash.log").read_text()
        assert "boom after 0 restarts" in out and "boom after 2 restarts" in out  # each start is told its count
        state = read_state(tmp_path)
        rows = {r["name"]: r for r in state["processes"]}
        assert rows["steady"]["state"] == "running" and rows["crash"]["restarts"] >= 3
    finally:
        sup.stop(["worker", "sink"], timeout=10)
    assert {r["state"] for r in read_state(tmp_path)["processes"]} == {"stopped"}


def test_stop_sends_sigterm_by_kind_and_leaves_the_rest(tmp_path):
    sup = Supervisor(tmp_path)
    sup.add(ProcessSpec("src", "source", GRACEFUL + [str(tmp_path / "src.term")]))
    sup.add(ProcessSpec("sink", "sink", GRACEFUL + [str(tmp_path / "sink.term")]))
    sup.start()
    time.sleep(1.0)  # the children install their handler
    sup.stop(["source"], timeout=10)
    assert (tmp_path / "src.term").read_text() == "term"
    assert sup.children["src"].last_exit == 0
    assert sup.children["sink"].state == "running" and not (tmp_path / "sink.term").exists()
    sup.stop(["sink"], timeout=10)
    assert (tmp_path / "sink.term").exists()


def test_stop_kills_what_ignores_sigterm(tmp_path):
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                      "time.sleep(60)"]
    sup = Supervisor(tmp_path)
    sup.add(ProcessSpec("stubborn", "worker", stubborn))
    sup.start()
    time.sleep(1.0)
    sup.stop(["worker"], timeout=1)
    assert sup.children["stubborn"].last_exit == -9
    assert "did not stop within 1s; killing it" in (tmp_path / "supervisor.log").read_text()


def test_read_state_marks_a_vanished_process_exited(tmp_path):
    (tmp_path / "ps.json").write_text(json.dumps({"supervisor_pid": 2 ** 22 + 12345, "processes": [
        {"name": "w", "kind": "worker", "pid": 2 ** 22 + 12346, "state": "running", "started": time.time(),
         "restarts": 0, "log": "x"}]}))
    state = read_state(tmp_path)
    assert state["supervisor_alive"] is False
    assert state["processes"][0]["state"] == "exited"


def test_up_refuses_a_second_factory_and_down_ps_say_when_there_is_none(tmp_path):
    run_dir = tmp_path / "factory"
    run_dir.mkdir()
    runner = CliRunner()
    res = runner.invoke(main, ["down", "--run-dir", str(run_dir)])
    assert res.exit_code == 1 and "no factory is running" in res.output
    res = runner.invoke(main, ["ps", "--run-dir", str(run_dir)])
    assert res.exit_code == 1 and "no factory state" in res.output
    (run_dir / "factory.pid").write_text(f"{os.getpid()}\n")  # a live pid: a factory "is running"
    res = runner.invoke(main, ["up", "--run-dir", str(run_dir)])
    assert res.exit_code == 1 and "already running" in res.output


def test_a_source_that_reaches_its_end_is_done_not_restarted(tmp_path):
    sup = Supervisor(tmp_path, backoff_initial_s=0.1)
    sup.add(ProcessSpec("src", "source", [sys.executable, "-c", "pass"], restart="on-failure"))
    sup.add(ProcessSpec("bad", "source", CRASHER, restart="on-failure"))
    sup.start()
    assert sup.wait_until(lambda: sup.children["bad"].restarts >= 1, timeout=20, every_s=0.05)
    assert sup.children["src"].state == "done" and sup.children["src"].restarts == 0
    assert not sup.settled("source")  # the failing one keeps being restarted
    sup.stop(["source"], timeout=5)
    assert "src finished (exit 0)" in (tmp_path / "supervisor.log").read_text()


def test_nice_lowers_the_priority_of_its_process(tmp_path):
    show = [sys.executable, "-c", "import os; print('niceness', os.nice(0))"]
    sup = Supervisor(tmp_path)
    sup.add(ProcessSpec("low", "trainer", show, nice=7, restart="on-failure"))
    sup.add(ProcessSpec("normal", "worker", show, restart="on-failure"))
    sup.start()
    assert sup.wait_until(lambda: all(c.state == "done" for c in sup.children.values()), timeout=20, every_s=0.1)
    base = os.nice(0)
    assert f"niceness {base + 7}" in (tmp_path / "logs" / "low.log").read_text()
    assert f"niceness {base}" in (tmp_path / "logs" / "normal.log").read_text()


def test_processes_left_by_a_dead_factory_are_stopped_before_a_new_one_starts(tmp_path):
    from foundry.factory import stop_leftovers

    sup = Supervisor(tmp_path)
    # the argument makes its command line look like a foundry process, as the check requires
    sup.add(ProcessSpec("orphan", "worker", SLEEPER + ["foundry.cli"]))
    sup.add(ProcessSpec("stranger", "worker", SLEEPER))
    sup.start()
    orphan, stranger = sup.children["orphan"].popen, sup.children["stranger"].popen
    try:
        assert stop_leftovers(tmp_path) == []  # its supervisor (this process) is alive: nothing to do
        state = json.loads((tmp_path / "ps.json").read_text())
        state["supervisor_pid"] = 2 ** 22 + 4321  # the supervisor died without its ordered stop
        (tmp_path / "ps.json").write_text(json.dumps(state))
        said = []
        assert stop_leftovers(tmp_path, said.append) == ["orphan"]
        assert orphan.wait(10) is not None and "orphan" in said[0]
        assert stranger.poll() is None  # not a foundry process (a reused pid, say): left alone
    finally:
        sup.stop(["worker"], timeout=5)
