"""The one error type of the data layer."""


class DatasetError(ValueError):
    """A dataset cannot be used as asked.

    The message is one line for a person: the file (or name), the value found, and what was expected.
    It subclasses ValueError so callers that already catch ValueError (as dlib's code does) keep working.
    """
