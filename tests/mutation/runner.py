"""The mutation-testing tier: ``make test-mutation`` (docs/development.md, "Mutation testing").

For each critical module (``targets.TARGETS``) every mutant (``mutators``) is written into a
copy of the project and only that module's fast tests are run against it: a failing test (or
a timeout, or a module that no longer imports) kills the mutant; passing tests let it survive.
The report gives the kill rate per module and in total and lists every survivor; the exit
status is 1 when the total kill rate is below ``--min-score`` or a survivor is not in
``targets.EXPLAINED`` (a survivor judged equivalent or harmless, with the reason).

    python -m tests.mutation.runner [--only NAME ...] [--jobs N] [--report PATH] [--list]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.mutation.mutators import Mutation, lua_mutations, python_mutations
from tests.mutation.targets import EXPLAINED, TARGETS, Target

ROOT = Path(__file__).resolve().parents[2]
SKIP_COPY = {".venv", ".git", ".cache", "site", "__pycache__", ".mypy_cache", ".ruff_cache"}


@dataclass
class Outcome:
    target: str
    mutation: Mutation
    rc: int
    seconds: float

    @property
    def killed(self) -> bool:
        return self.rc != 0

    @property
    def verdict(self) -> str:
        if self.rc == 0:
            return "survived"
        return "timeout" if self.rc == -1 else "killed"

    @property
    def key(self) -> str:
        return f"{self.target}:{self.mutation.line}:{self.mutation.desc}"


def mutations_of(target: Target) -> list[Mutation]:
    source = (ROOT / target.path).read_text()
    if target.path.endswith(".lua"):
        return list(lua_mutations(source))
    return list(python_mutations(source, target.functions))


class Slot:
    """A copy of the project and its ``tests.mutation.slot`` process."""

    def __init__(self, base: Path, number: int, all_tests: list[str]) -> None:
        self.dir = base / f"slot{number}"
        copy = self.dir / "repo"
        shutil.copytree(ROOT, copy, ignore=lambda d, names: [n for n in names if n in SKIP_COPY])
        # The SDK captures some tests read from ``shared/`` beside the repository (or beside
        # the folder of worktrees); the copy gets the same, so those tests run, not skip.
        for shared in (ROOT.parent / "shared", ROOT.parent.parent / "shared"):
            if shared.is_dir():
                (self.dir / "shared").symlink_to(shared)
                break
        env = {**os.environ, "PYTHONPATH": str(copy)}
        self.proc = subprocess.Popen(
            ["nice", "-n", "10", sys.executable, "-m", "tests.mutation.slot", str(copy)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=copy,
            env=env,
        )
        self._send({"tests": all_tests})
        ready = self._receive()
        assert ready.get("ready"), ready

    def _send(self, message: dict[str, object]) -> None:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps(message) + "\n")
        stdin.flush()

    def _receive(self) -> dict[str, object]:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"mutation slot {self.dir} ended")
        reply: dict[str, object] = json.loads(line)
        return reply

    def run(self, target: Target, text: str | None, timeout: float) -> tuple[int, float, str]:
        self._send(
            {"file": target.path, "text": text, "tests": list(target.tests), "timeout": timeout}
        )
        reply = self._receive()
        rc, seconds, log = reply["rc"], reply["s"], reply.get("log", "")
        assert isinstance(rc, int)
        assert isinstance(seconds, int | float)
        assert isinstance(log, str)
        return rc, float(seconds), log

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


@dataclass
class Tally:
    target: Target
    baseline_s: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def killed(self) -> int:
        return sum(1 for o in self.outcomes if o.killed)


def _work(
    slot: Slot, jobs: queue.Queue[tuple[Tally, Mutation, float]], lock: threading.Lock
) -> None:
    while True:
        try:
            tally, mutation, timeout = jobs.get_nowait()
        except queue.Empty:
            return
        rc, seconds, _ = slot.run(tally.target, mutation.text, timeout)
        outcome = Outcome(tally.target.name, mutation, rc, seconds)
        with lock:
            tally.outcomes.append(outcome)
            tally.seconds += seconds
            if not outcome.killed:
                print(f"  survived {outcome.key}", flush=True)


def _baselines(slots: list[Slot], tallies: list[Tally]) -> None:
    """Run each target's tests unmutated: they must pass, and their time sets the timeout."""
    for i, tally in enumerate(tallies):
        rc, seconds, log = slots[i % len(slots)].run(tally.target, None, 900)
        if rc != 0:
            raise SystemExit(f"{tally.target.name}: its tests fail unmutated (rc {rc}):\n{log}")
        tally.baseline_s = seconds
        print(f"baseline {tally.target.name}: {seconds:.1f} s", flush=True)


def report(tallies: list[Tally], wall_s: float, jobs: int) -> tuple[str, float, list[Outcome]]:
    lines = [
        "| module | mutants | killed | survived | explained | kill rate | tests' time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    total = killed = explained_n = 0
    unexplained: list[Outcome] = []
    for t in tallies:
        n, k = len(t.outcomes), t.killed
        survivors = [o for o in t.outcomes if not o.killed]
        expl = [o for o in survivors if o.key in EXPLAINED]
        unexplained += [o for o in survivors if o.key not in EXPLAINED]
        total, killed, explained_n = total + n, killed + k, explained_n + len(expl)
        rate = 100.0 * k / n if n else 100.0
        lines.append(
            f"| {t.target.name} (`{t.target.path}`) | {n} | {k} | {n - k} | {len(expl)} "
            f"| {rate:.1f} % | {t.seconds:.0f} s |"
        )
    score = 100.0 * killed / total if total else 100.0
    lines.append(
        f"| **total** | {total} | {killed} | {total - killed} | {explained_n} | **{score:.1f} %** "
        f"| {wall_s / 60:.1f} min wall, {jobs} jobs |"
    )
    survivors_all = [o for t in tallies for o in t.outcomes if not o.killed]
    if survivors_all:
        lines += ["", "Survivors (module:line:mutation):", ""]
        for o in sorted(survivors_all, key=lambda o: (o.target, o.mutation.line)):
            why = EXPLAINED.get(o.key)
            lines.append(f"- `{o.key}`" + (f": {why}" if why else "  **not explained**"))
    return "\n".join(lines) + "\n", score, unexplained


def _selected(only: list[str]) -> Iterator[Target]:
    names = {t.name for t in TARGETS}
    unknown = set(only) - names
    if unknown:
        raise SystemExit(f"unknown target(s) {sorted(unknown)}; known: {sorted(names)}")
    for t in TARGETS:
        if not only or t.name in only:
            yield t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.mutation.runner")
    ap.add_argument("--only", action="append", default=[], help="a target name (repeatable)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--min-score", type=float, default=90.0)
    ap.add_argument("--report", type=Path, default=ROOT / ".cache/mutation/report.md")
    ap.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    ap.add_argument(
        "--survivors",
        type=Path,
        help="run only the mutants listed in this file (one key a line, as the last run wrote "
        "them to survivors.txt beside the report): checks new tests quickly",
    )
    args = ap.parse_args(argv)

    targets = list(_selected(args.only))
    wanted: set[str] | None = None
    if args.survivors is not None:
        wanted = {k for k in args.survivors.read_text().splitlines() if k}
        targets = [t for t in targets if any(k.startswith(f"{t.name}:") for k in wanted)]
    if args.list:
        for t in targets:
            for m in mutations_of(t):
                print(f"{t.name}:{m.line}:{m.desc}")
        return 0
    started = time.monotonic()
    tallies = [Tally(t) for t in targets]
    all_tests = sorted({test.split("::")[0] for t in targets for test in t.tests if test[0] != "-"})
    base = Path(tempfile.mkdtemp(prefix="idv-mutation-"))
    slots: list[Slot] = []
    try:
        slots = [Slot(base, i, all_tests) for i in range(max(1, args.jobs))]
        _baselines(slots, tallies)
        jobs: queue.Queue[tuple[Tally, Mutation, float]] = queue.Queue()
        for tally in tallies:
            timeout = max(30.0, 3 * tally.baseline_s)
            muts = mutations_of(tally.target)
            if wanted is not None:
                name = tally.target.name
                muts = [m for m in muts if f"{name}:{m.line}:{m.desc}" in wanted]
            print(f"{tally.target.name}: {len(muts)} mutants", flush=True)
            for m in muts:
                jobs.put((tally, m, timeout))
        lock = threading.Lock()
        threads = [threading.Thread(target=_work, args=(s, jobs, lock)) for s in slots]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        for s in slots:
            s.close()
        shutil.rmtree(base, ignore_errors=True)
    text, score, unexplained = report(tallies, time.monotonic() - started, len(slots))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    survivors = sorted({o.key for t in tallies for o in t.outcomes if not o.killed})
    (args.report.parent / "survivors.txt").write_text("".join(f"{k}\n" for k in survivors))
    print(text)
    print(f"report written to {args.report}")
    if score < args.min_score:
        print(f"kill rate {score:.1f} % is below {args.min_score} %")
        return 1
    if unexplained:
        print(f"{len(unexplained)} survivor(s) neither killed nor explained")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
