"""The kit's one fix for gin-config 0.4.0 on Python 3.11 (0.5 rejects dlib's ``blacklist=``, so 0.4 it is)."""


def gin_python311_compat() -> None:
    """gin-config 0.4.0 reads ``collections.Mapping``/``collections.Iterable``, which Python 3.10 removed (they live in
    ``collections.abc``); without these aliases every binding fails at finalisation."""
    import collections
    import collections.abc
    for name in ("Mapping", "Iterable", "Sequence", "MutableMapping", "ValuesView"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
