"""User-facing errors: one clear line, no traceback in the CLI."""


class DeltaplaneError(Exception):
    """An error caused by the user's input or environment; the CLI prints `error: <message>` and exits 2."""


class InputError(DeltaplaneError):
    """Bad or unusable input (video, audio, dataset, checkpoint)."""


class MissingDependencyError(DeltaplaneError):
    """An optional dependency or user-supplied weight file is needed but absent."""
