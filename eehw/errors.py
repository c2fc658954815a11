"""The one exception type a user sees: the CLI prints its message as a single line."""


class EehwError(Exception):
    """A problem with the user's input or environment, phrased as what is wrong and how to fix it."""


class VerificationError(EehwError):
    """Two levels of the flow disagree, a sample was lost or duplicated, or a stated bound was
    broken: the design is not what the report would claim, so the flow stops (exit 2) and the
    report is written as failed. ``level`` names the check ("rtl early_exit", "hls", ...)."""

    def __init__(self, level: str, message: str):
        super().__init__(f"{level}: {message}")
        self.level, self.message = level, message

    def __reduce__(self):
        # Raised in a DSE validation worker, it must cross back to the parent process: the
        # default pickling calls __init__ with the one formatted string (BrokenProcessPool).
        return type(self), (self.level, self.message)


def first_line(exc: BaseException) -> str:
    """An exception from a library (hls4ml, qonnx, torch) as one line for an EehwError."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
