"""Errors a user can fix: they are reported as one line and a non-zero exit, never a traceback."""


class UserError(Exception):
    """A problem with the user's input (config value, data file, run folder, device).

    The message is the one line the user sees; ``exit_code`` is the process exit status.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class Rejected(BaseException):
    """Carries a UserError out of a Hydra callback.

    Hydra turns an Exception raised in a callback into a warning and carries on (creating the
    run folder); a BaseException passes through, so a bad config stops before anything is written.
    """

    def __init__(self, error: UserError):
        super().__init__(str(error))
        self.error = error
