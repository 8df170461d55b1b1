"""Overhead of the runner: an empty chapter through `python -m fairkit run` vs plain `python`.

Both run the same code (import fairkit.runs, start a run, finish it); the difference is kernel
start-up, papermill and the run-folder bookkeeping. Goal: under 5 s per chapter.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODE = "from fairkit import runs\nrun = runs.start()\nrun.finish()\n"
PARAMS = 'mode = "smoke"\nseed = 0\ndevice = "cpu"\n'


def timed(command: list[str], cwd: Path, env=None) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main(repeats: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        notebook = tmp / "empty.py"
        notebook.write_text(f'# %% tags=["parameters"]\n{PARAMS}\n# %%\n{CODE}')
        script = tmp / "plain.py"
        script.write_text(PARAMS + CODE)
        env = {**__import__("os").environ, "FAIRKIT_RUN_DIR": str(tmp / "plain-run")}
        runner = [sys.executable, "-m", "fairkit", "run", str(notebook), "--runs-root", str(tmp)]
        plain = min(timed([sys.executable, str(script)], tmp, env) for _ in range(repeats))
        through = min(timed(runner, tmp) for _ in range(repeats))
    print(f"plain python:  {plain:6.2f} s")
    print(f"runner:        {through:6.2f} s")
    print(f"overhead:      {through - plain:6.2f} s per chapter (goal < 5 s)")
    print(f"ratio runner/plain: {through / plain:.2f}x")


if __name__ == "__main__":
    main()
