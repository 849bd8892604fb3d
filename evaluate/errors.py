"""The evaluator's one error type for bad input."""


class EvaluationError(ValueError):
    """The representation, dataset or settings cannot be evaluated as asked.

    The message is one line for a person: the file (or name), the value found, and what was expected. The CLI prints it and
    exits with status 2, before anything is written.
    """
