"""The one error the local cluster's commands raise to the user."""


class BayError(RuntimeError):
    """A problem the user can fix; the message says how."""
