"""Errors a user can cause: the CLI prints each as one line and exits with its `exit_code`."""


class TinyGPTError(Exception):
    """A problem with the inputs or the environment (data, checkpoint, out-dir), not a bug."""

    exit_code = 1


class UsageError(TinyGPTError):
    """Invalid flags or values on the command line (same exit status as argparse's own errors)."""

    exit_code = 2


class DataError(TinyGPTError):
    """The training text is missing, unreadable, or unsuitable."""


class CheckpointError(TinyGPTError, ValueError):
    """A checkpoint file is missing, corrupt, or does not match its config.json."""


class TrainingDiverged(TinyGPTError):
    """The loss or gradient norm became non-finite."""


def one_line(error):
    """An exception's message on one line (libraries' messages often span several)."""
    return " ".join(str(error).split()) or type(error).__name__


class TrainingInterrupted(Exception):
    """Ctrl-C (exit status 130) or SIGTERM (143) during training; the message says what was saved
    and how to resume."""

    def __init__(self, message, exit_code=130):
        super().__init__(message)
        self.exit_code = exit_code


class DistributedError(TinyGPTError):
    """MPI (or NCCL) is missing or unusable, or the ranks of a job cannot train together."""
