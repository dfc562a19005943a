"""First-run benchmark: the README's scripted first run, timed end to end.

In a fresh temporary folder (no `.env`, no data yet) it writes `--photos` photos of
`--size` px into `./me` and runs the console exactly as the README shows it:

    printf '/photos ./me\\n/train man\\n/wait\\n/imagine astronaut\\n' | photoshoot-bot chat

That is the embedded default: SQLite under ./data and our worker in-process on the tiny
random SDXL (`SDXL_MODEL=tiny`), so the time covers start-up, photo intake, a whole training
and one /imagine (four images with their hires pass), until the console exits after the last
image. Settings from the environment are dropped, so a developer's variables do not change it.

It prints each line of the chat with the second it appeared, then the total (wall and the
child's CPU time) and the load average, since a busy machine stretches the wall time.
Target (issue 13): <= 60 s on 2 cores. Usage: python bench/first_run.py [--photos 6]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bot, tests.imagegen

from bot.config import Settings
from tests.imagegen import jpeg_bytes

SCRIPT = "/photos ./me\n/train man\n/wait\n/imagine astronaut\n"
"""The README's script, line for line."""
SAVED = re.compile(r"^bot>\s+/\S+\.(?:png|jpg|webp)$")
TARGET_S = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=6, help="how many photos (default 6)")
    parser.add_argument("--size", type=int, default=1024, help="their side in px (>= 1024)")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many s")
    args = parser.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS", "unset: torch uses every core")
    print(f"{os.cpu_count()} CPUs, OMP_NUM_THREADS {threads}, load average before: {_load()}")
    with tempfile.TemporaryDirectory(prefix="first-run-") as folder:
        root = Path(folder)
        write_photos(root / "me", args.photos, args.size)
        lines, wall, cpu, code = run_chat(root, args.timeout)
        saved = sum(1 for _, line in lines if SAVED.match(line))
    print(f"load average after: {_load()}")
    print(
        f"first run: {wall:.1f} s wall, {cpu:.1f} s CPU (the chat process), exit {code},"
        f" {saved} images saved; target <= {TARGET_S:.0f} s:"
        f" {'met' if wall <= TARGET_S else 'missed'}"
    )
    return 0 if code == 0 and saved else 1


def write_photos(folder: Path, count: int, size: int) -> None:
    """`count` different synthetic photos (deterministic, as the tests make them)."""
    folder.mkdir(parents=True)
    for seed in range(count):
        (folder / f"photo{seed:02d}.jpg").write_bytes(jpeg_bytes(size, size, seed=seed))


def run_chat(cwd: Path, timeout: float) -> tuple[list[tuple[float, str]], float, float, int]:
    """Run `photoshoot-bot chat` on SCRIPT in `cwd`; (timed lines, wall s, CPU s, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(
        [*_command(), "chat"],
        cwd=cwd,
        env=_clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))
            print(f"{lines[-1][0]:6.1f}s  {lines[-1][1]}", flush=True)

    reader = threading.Thread(target=read)
    reader.start()
    assert process.stdin is not None
    process.stdin.write(SCRIPT)
    process.stdin.close()
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    wall = time.perf_counter() - start
    reader.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return lines, wall, cpu, code


def _command() -> list[str]:
    """The installed `photoshoot-bot` beside this Python (a venv's), else `python -m bot`."""
    script = Path(sys.executable).with_name("photoshoot-bot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


def _clean_env() -> dict[str, str]:
    """This environment without any of the bot's settings: the defaults, as a new user has."""
    names = {name.upper() for name in Settings.model_fields}
    return {
        k: v
        for k, v in os.environ.items()
        if k not in names and not k.startswith(("WORKER_", "SDXL_"))
    }


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
