"""Sampling profiles of the API process with py-spy (optional: ``pip install py-spy``; not a dependency).

py-spy runs with ``--gil``: it samples only the thread holding the GIL, so waits on the database,
the network or the thread pool drop out and the percentages are shares of the Python work that a
one-worker server does one thread at a time. Three views of each profile:
- by package: the package of the innermost frame (where the CPU actually was);
- our code, self: each sample charged to the innermost frame in HimHIS code, with the library
  calls beneath it (``validate_resource`` includes the pydantic work it asks for);
- our code, inclusive: every HimHIS function on the stack.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import TracebackType

from himhis.config import ROOT

OUR_PACKAGES = ("ehr", "himhis", "identity", "his", "integrations", "reports", "audit")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    return shutil.which("py-spy") or (str(p) if (p := Path(sys.executable).with_name("py-spy")).exists() else None)


class Profiler:
    """``py-spy record`` attached to the server while the block runs; writes collapsed stacks to ``out``."""

    def __init__(self, pid: int, out: Path, *, rate: int = 100, subprocesses: bool = False) -> None:
        self.pid, self.out, self.rate, self.subprocesses = pid, out, rate, subprocesses
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Profiler:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (.venv/bin/pip install py-spy)")
        cmd = [exe, "record", "--pid", str(self.pid), "--format", "raw", "--output", str(self.out),
               "--rate", str(self.rate), "--nonblocking", "--gil", *(["--subprocesses"] if self.subprocesses else [])]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _location(frame: str) -> tuple[str, str]:
    """(file, function) of a py-spy frame such as ``read (ehr/routes.py:245)``."""
    m = _FRAME.match(frame)
    return (m["file"], m["func"]) if m else ("", frame)


def _ours(file: str) -> str | None:
    """The path of a HimHIS source file relative to the repository, or None for library code."""
    if "site-packages" in file or "/lib/python" in file:
        return None
    path = file.removeprefix(str(ROOT) + "/")
    return path if path.split("/", 1)[0] in OUR_PACKAGES and path.endswith(".py") else None


def _package(file: str) -> str:
    if (ours := _ours(file)) is not None:
        return ours.split("/", 1)[0] + " (ours)"
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/lib/python" in file:
        return "stdlib"
    return file.split("/", 1)[0] or "?"


def summarise(path: Path, *, top: int = 15) -> str:
    """The three views of a py-spy raw profile, as text."""
    total = 0
    by_package: Counter[str] = Counter()
    own_self: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_location(f) for f in stack.split(";")]
        by_package[_package(frames[-1][0])] += n
        seen: set[str] = set()
        innermost = None
        for file, func in frames:
            if (ours := _ours(file)) is not None:
                innermost = f"{ours}:{func}"
                if innermost not in seen:
                    seen.add(innermost)
                    inclusive[innermost] += n
        own_self[innermost or "(no HimHIS frame: server, event loop, threads)"] += n
    if not total:
        return f"  (no samples in {path})"

    def block(title: str, counts: Counter[str]) -> list[str]:
        return [f"  {title}", *(f"    {100 * n / total:5.1f} %  {name}" for name, n in counts.most_common(top))]

    return "\n".join([f"  {total} samples of the server on CPU ({path})",
                      *block("by package (innermost frame):", by_package),
                      *block("our code, self (innermost HimHIS frame, with the library calls under it):", own_self),
                      *block("our code, inclusive:", inclusive)])
