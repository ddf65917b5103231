"""The library's error for a request it refuses.

`InvalidArgumentError` is a `ValueError` raised for arguments a caller can
fix (a bad setting, an unknown piece, a prefix that does not fit); its
message names the fault and is safe to show to whoever made the request.
Any other exception is a fault of the library or of what it runs on.
"""


class InvalidArgumentError(ValueError):
    """An argument the library refuses, with a message that says why."""
