"""The one exception type a user sees: the CLI prints its message as a single line."""


class EehwError(Exception):
    """A problem with the user's input or environment, phrased as what is wrong and how to fix it."""
