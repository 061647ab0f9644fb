"""The one error type c2f raises for problems a user can fix."""


class C2FError(Exception):
    """What went wrong, with which file, and what to do; the CLI prints it as one line."""


class ModelError(C2FError):
    """A model that cannot be right (outputs of the wrong shape, NaN): a fault of every image, so folder mode stops."""
