"""Tuning jobs: tune -> records on disk -> compile from them -> matches PyTorch; a killed job
resumes without losing records; bad logs give clear errors or warnings; RPC fan-out on loopback.

Real MetaSchedule runs on a tiny model (a dense stem, two sparse 3x3 convs, a linear), a few
trials each: ~15 s per job.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import fscnn_tvm
from fscnn_tvm import profiles, targets, tuning
from fscnn_tvm.errors import TuningLogError, TuningLogWarning
from fscnn_tvm.testing import TOLERANCE, randomize_, random_input, relative_error, sparsify_, torch_reference

pytestmark = pytest.mark.heavy  # real tuning jobs (make test-fast skips them)

SHAPE = (1, 3, 24, 24)
TRIALS = 3


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.conv1 = torch.nn.Conv2d(16, 64, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(64, 64, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(64, 64, 3, padding=1)  # dense: runs Winograd
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.relu(self.conv1(x))
        y = torch.relu(self.conv2(y) + y)
        y = torch.relu(self.conv3(y))
        return self.fc(y.mean((2, 3)))


def tiny_model() -> torch.nn.Module:
    model = randomize_(Tiny()).eval()
    sparsify_(model.conv1, 0.95, seed=1)
    sparsify_(model.conv2, 0.95, seed=2)
    sparsify_(model.fc, 0.9, seed=3)
    return model


@pytest.fixture(scope="module")
def profile():
    """The built-in profile: the plan (hence the tasks) is the same on every machine."""
    return profiles.builtin_profile(targets.parse("llvm"))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, profile):
    """One tuning job on the tiny model: (model, log folder, report)."""
    folder = tmp_path_factory.mktemp("tuning") / "tiny"
    model = tiny_model()
    report = fscnn_tvm.tune(model, SHAPE, trials=TRIALS, log_dir=folder, profile=profile)
    return model, folder, report


def measurements(meta: dict) -> int:
    """How many times the job measured a candidate (``meta.json``'s history)."""
    return sum(len(m["ms"]) for e in meta["tasks"].values() for m in e["measured"])


def database_lines(folder: Path) -> list:
    """(workload index, run seconds) of every record line of the log's JSONDatabase."""
    return [(json.loads(line)[0], json.loads(line)[1][1])
            for line in (folder / "database_tuning_record.json").read_text().splitlines()]


def test_tune_writes_records_and_meta(tuned):
    _, folder, report = tuned
    # the records only (argument arrays stay in the job's scratch folder)
    assert sorted(p.name for p in folder.iterdir()) == ["database_tuning_record.json", "database_workload.json",
                                                        "meta.json"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["tvm"] and meta["target"] == targets.tag(targets.parse("llvm")) and meta["host_cpu"]
    assert meta["trials"] == TRIALS and meta["date"]
    kinds = sorted(e["kind"] for e in meta["tasks"].values())
    # the stem (direct), both sparse convs and the dense 3x3 (Winograd)
    assert kinds[:3] == ["csr", "csr", "dense"] and kinds[3].startswith("winograd"), kinds
    for name, entry in meta["tasks"].items():
        assert entry["done"] and entry["trials"] >= 1, name
        assert 0 < entry["hand_ms"] < float("inf"), name
        measured_configs = [m["config"] for m in entry["measured"] if m["ms"]]
        if entry["use_record"]:  # the configuration compile applies was measured in this job
            assert entry["config"] in measured_configs and entry["record_task"], name
        else:
            assert entry["config"] == {} and entry["record_task"] is None, name
    dense = next(e for e in meta["tasks"].values() if e["kind"] == "dense")
    assert dense["trials"] >= TRIALS  # MetaSchedule measured the trial budget (per output-channel block)
    assert measurements(meta) >= TRIALS + 3 * 3  # sparse and Winograd: >= 3 configurations each
    winograd = next(e for e in meta["tasks"].values() if e["kind"].startswith("winograd"))
    measured_knobs = {k for m in winograd["measured"] for k in m["config"]}
    assert measured_knobs == {"p_tile", "block_rows"}, winograd["measured"]
    # compacted: one record per configuration in use, one workload each
    used = sum(e["use_record"] for e in meta["tasks"].values())
    assert meta["compacted"] and sorted(w for w, _ in database_lines(folder)) == list(range(used))
    assert "tuned 4 tasks" in report.format()


def test_compile_from_records_matches_torch(tuned, profile, caplog):
    model, folder, _ = tuned
    meta = json.loads((folder / "meta.json").read_text())
    used = sum(len(e["layers"]) for e in meta["tasks"].values() if e["use_record"])
    with caplog.at_level("INFO", logger="fscnn_tvm"):
        compiled = fscnn_tvm.compile(model, SHAPE, profile=profile, tuning_log=folder)
    assert f"applied {used} tuned records" in caplog.text
    x = random_input(SHAPE, 0)
    assert relative_error(compiled(x), torch_reference(model, x)) <= TOLERANCE


def test_tuned_configuration_is_applied(tuned, profile):
    """Every kernel whose entry uses a record gets that configuration back from the log."""
    model, folder, _ = tuned
    from fscnn_tvm import kernels
    from fscnn_tvm.pipeline import plan_model
    from fscnn_tvm.tuning.tasks import task_name

    tgt = targets.parse("llvm")
    planned = plan_model(model, SHAPE, tgt, "auto", profile)
    log = tuning.TunedSchedules(folder, tgt)
    meta = json.loads((folder / "meta.json").read_text())
    for layer, row in zip(planned.layers, planned.plan):
        kernel = kernels.build_kernel(layer, row.kernel, tgt)
        entry = meta["tasks"].get(task_name(kernel)) if kernel is not None else None
        if entry is None:
            continue
        config = log.config(kernel)
        if entry["use_record"]:
            assert config == entry["config"], layer.name
            variant = kernels.build_kernel(layer, row.kernel, tgt, config or None)
            func = log.schedule(kernel, variant)
            assert func is not None and func.attrs["tirx.is_scheduled"]
        else:
            assert config is None, layer.name


def test_rerun_of_a_finished_log_measures_nothing(tuned, profile):
    model, folder, _ = tuned
    before = (folder / "database_tuning_record.json").read_text()
    report = fscnn_tvm.tune(model, SHAPE, trials=TRIALS, log_dir=folder, profile=profile)
    assert (folder / "database_tuning_record.json").read_text() == before
    assert len(report.tasks) == 4


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _done_tasks(folder: Path) -> dict:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in meta["tasks"].items() if v.get("done")}


def _parses(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except json.JSONDecodeError:
        return False


def test_killed_job_resumes_and_loses_nothing(tmp_path, profile):
    model = tiny_model()
    pt2 = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(SHAPE),)), pt2)
    profile_path = profile.save(tmp_path / "profile.json")
    folder = tmp_path / "log"
    cmd = [sys.executable, "-m", "fscnn_tvm.cli", "tune", str(pt2), "--trials", str(TRIALS), "--log-dir", str(folder),
           "--profile", str(profile_path)]
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: len(_done_tasks(folder)) >= 1 or job.poll() is not None, 240, "a finished task")
        assert job.poll() is None, job.stderr.read().decode()[-2000:]
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()
    finished = _done_tasks(folder)
    records_before = (folder / "database_tuning_record.json").read_text().splitlines()
    assert 1 <= len(finished) < 3
    # a kill during a write leaves at most a cut-short last line; the rerun drops it with a warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TuningLogWarning)
        report = fscnn_tvm.tune(str(pt2), trials=TRIALS, log_dir=folder, profile=profile)
    assert len(report.tasks) == 4 and all(e["done"] for e in report.tasks.values())
    for name, entry in finished.items():  # finished tasks kept their records and were not measured again
        assert report.tasks[name] == entry
        assert entry["trials"] >= 1
    assert records_before and all(_parses(line) for line in records_before[:-1])


def test_cut_short_record_line_is_dropped_with_a_warning(tuned, profile, tmp_path):
    model, folder, _ = tuned
    copy = tmp_path / "log"
    shutil.copytree(folder, copy)
    path = copy / "database_tuning_record.json"
    lines = path.read_text().splitlines()
    path.write_text("".join(f"{line}\n" for line in lines) + '[0, [[[["GetSBlock", [], ["conv", "ma')
    with pytest.warns(TuningLogWarning, match="dropped 1 unreadable line"):
        compiled = fscnn_tvm.compile(model, SHAPE, profile=profile, tuning_log=copy)
    assert path.read_text().splitlines() == lines
    x = random_input(SHAPE, 0)
    assert relative_error(compiled(x), torch_reference(model, x)) <= TOLERANCE


def _edit_meta(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "meta.json").read_text())
    meta.update(changes)
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


def test_log_of_another_target_is_refused(tuned, tmp_path):
    model, folder, _ = tuned
    foreign = _edit_meta(folder, tmp_path / "log", target="llvm-skylake-avx512")
    with pytest.raises(TuningLogError, match="for target llvm-skylake-avx512"):
        fscnn_tvm.compile(model, SHAPE, tuning_log=foreign)


def test_log_of_another_tvm_version_is_ignored_with_a_warning(tuned, profile, tmp_path, caplog):
    model, folder, _ = tuned
    old = _edit_meta(folder, tmp_path / "log", tvm="0.19.0")
    with pytest.warns(TuningLogWarning, match="TVM 0.19.0"), caplog.at_level("INFO", logger="fscnn_tvm"):
        fscnn_tvm.compile(model, SHAPE, profile=profile, tuning_log=old)
    assert "applied 0 tuned records" in caplog.text
    with pytest.warns(TuningLogWarning), pytest.raises(TuningLogError, match="tune into another"):
        fscnn_tvm.tune(model, SHAPE, log_dir=old, profile=profile)


@pytest.mark.parametrize("content, match", [("{not json", "corrupt"), ('{"format": 99}', "not a tuning log"),
                                             (None, "no meta.json")])
def test_corrupt_log_gives_a_clear_error(tuned, tmp_path, content, match):
    model, folder, _ = tuned
    broken = tmp_path / "log"
    shutil.copytree(folder, broken)
    if content is None:
        (broken / "meta.json").unlink()
    else:
        (broken / "meta.json").write_text(content)
    with pytest.raises(TuningLogError, match=match):
        fscnn_tvm.compile(model, SHAPE, tuning_log=broken)


def test_missing_log_folder(tmp_path):
    with pytest.raises(TuningLogError, match="no such tuning log folder"):
        fscnn_tvm.compile(tiny_model(), SHAPE, tuning_log=tmp_path / "nowhere")


@pytest.mark.parametrize("options, match", [
    (["--rpc-key", "k"], "--rpc-key needs --rpc-tracker"),
    (["--rpc-tracker", "localhost"], "HOST:PORT"),
    (["--rpc-tracker", "localhost:9190"], "needs --rpc-key"),
    (["--trials", "0"], "trials must be >= 1"),
])
def test_cli_tune_bad_options(options, match, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fscnn_tvm.cli", "tune", "resnet18", "--log-dir", str(tmp_path),
                           *options], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert match in proc.stderr and "Traceback" not in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rpc_loopback_two_servers(tmp_path, profile):
    """A tracker and two RPC servers on this machine; the job measures through them."""
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                               "--port", str(port), "--port-end", str(port + 1)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        from tvm import rpc

        def tracker_up():
            try:
                rpc.connect_tracker("127.0.0.1", port).summary()
                return True
            except Exception:  # noqa: BLE001 - not listening yet
                return False

        _wait_for(tracker_up, 60, "the RPC tracker")
        for _ in range(2):
            server_port = _free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(server_port),
                 "--port-end", str(server_port + 1), "--tracker", f"127.0.0.1:{port}", "--key", "fscnn-test"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def servers_up():
            queue = rpc.connect_tracker("127.0.0.1", port).summary()["queue_info"]
            return queue.get("fscnn-test", {}).get("free", 0) == 2

        _wait_for(servers_up, 60, "two RPC servers")
        folder = tmp_path / "log"
        model = tiny_model()
        report = fscnn_tvm.tune(model, SHAPE, trials=2, log_dir=folder, profile=profile,
                                rpc_tracker=f"127.0.0.1:{port}", rpc_key="fscnn-test")
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["runner"] == f"rpc fscnn-test@127.0.0.1:{port}"
        assert len(report.tasks) == 4
        for name, entry in report.tasks.items():
            assert entry["done"] and 0 < entry["hand_ms"] < float("inf"), name
        assert measurements(meta) >= 2 + 2 * 3
        compiled = fscnn_tvm.compile(model, SHAPE, profile=profile, tuning_log=folder)
        x = random_input(SHAPE, 0)
        assert relative_error(compiled(x), torch_reference(model, x)) <= TOLERANCE
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_records_hold_real_measurements(tuned):
    """Run times in the database are plausible seconds, not the 1e10 of a failed candidate."""
    _, folder, _ = tuned
    meta = json.loads((folder / "meta.json").read_text())
    times = [t for _, secs in database_lines(folder) for t in secs]
    times += [ms / 1e3 for e in meta["tasks"].values() for m in e["measured"] for ms in m["ms"]]
    assert times and all(0 < t < 1 for t in times), times
    assert np.isfinite(times).all()
