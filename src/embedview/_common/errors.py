"""The one exception type for bad input."""


class EmbedviewError(ValueError):
    """Raised for input that embedview cannot use.

    The message is one sentence: what was wrong and what to do instead. The
    command line prints it without a traceback and exits with status 2.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> try:
    ...     embedview.visualize(np.zeros((2, 3)), original_size=(10, 10))
    ... except embedview.EmbedviewError as err:
    ...     print("refused")
    refused
    """
