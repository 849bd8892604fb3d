"""Read a TorchScript archive's code before anything loads it: only pure tensor operations may run.

A TorchScript file is code, not data: ``torch.jit.load`` runs a module's ``__setstate__``, and its ``forward`` can call
any registered operator, ``torch.from_file`` and ``torch.save`` among them. So before the kit loads a TorchScript file it
reads the archive's serialized code (``<archive>/code/**.py``, TorchScript's Python-syntax form) and its pickles, and
refuses the file, in one line naming it and the offending call, unless:

* every call is a pure tensor operation from ``PURE_OPS`` (``torch.<op>``, ``ops.aten.<op>``), a builtin from
  ``BUILTINS``, or a method or function the archive itself defines (``forward`` and the like);
* no class defines ``__setstate__`` or ``__getstate__`` (the kit's exports never do);
* the pickles name only tensors, storages, ordered dicts, TorchScript's list builders and the archive's own classes.

The allowlist holds every call the kit's own exports make (every model kind, architecture and head) and the common
layers of other networks (convolutions, normalisation, pooling, activations, shape operations). File, storage, process
and network calls are not in it, nor is anything else. The rule narrows what a crafted file can do; it does not make
running a stranger's model safe: run models you do not trust in a container anyway.
"""
import ast
import pickletools
import zipfile

PURE_OPS = frozenset("""
    _convolution conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d linear matmul mm bmm addmm
    einsum relu relu_ leaky_relu elu selu celu gelu silu mish softplus hardtanh hardsigmoid hardswish sigmoid tanh
    softmax log_softmax threshold prelu batch_norm layer_norm group_norm instance_norm dropout feature_dropout
    alpha_dropout max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d
    adaptive_avg_pool2d adaptive_max_pool2d upsample_nearest2d upsample_bilinear2d pad constant_pad_nd reflection_pad2d
    replication_pad2d pixel_shuffle to type_as contiguous flatten reshape view view_as permute transpose t squeeze
    unsqueeze expand expand_as repeat chunk split split_with_sizes tensor_split unbind cat stack slice select narrow
    index_select index gather movedim flip roll size dim numel
    add sub rsub mul div true_divide floor_divide remainder neg abs exp log log1p expm1 sqrt rsqrt pow square reciprocal
    clamp clamp_min clamp_max minimum maximum floor ceil round sign where eq ne gt lt ge le logical_not masked_fill lerp
    mean sum prod max min amax amin std var norm logsumexp argmax argmin cumsum zeros zeros_like ones ones_like full
    full_like empty_like arange linspace tensor scalar_tensor device clone detach
    __contains__ __getitem__ __is__ __isnot__ __not__ __range_length__ __derive_index__ len append
    __and__ __or__ __xor__ __invert__ __lshift__ __rshift__ bitwise_and bitwise_or bitwise_xor bitwise_not fmod trunc
    frac mv dot outer cos sin atan2 erf sort topk argsort unique_consecutive one_hot embedding long int float double
    bool half bfloat16 type zero_ fill_ copy_ add_ mul_ sub_ div_ clamp_ index_put_ masked_fill_ item
""".split())
PRIM_OPS = frozenset("NumToTensor dtype device layout shape min max".split())
BUILTINS = frozenset("getattr len int float bool annotate uninitialized unchecked_cast isinstance range min max abs "
                     "tuple list".split())
FORBIDDEN_METHODS = frozenset({"__setstate__", "__getstate__"})
PICKLE_GLOBALS = frozenset({("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
                            ("collections", "OrderedDict"), ("torch.jit._pickle", "restore_type_tag"),
                            ("torch.jit._pickle", "build_intlist"), ("torch.jit._pickle", "build_tensorlist"),
                            ("torch.jit._pickle", "build_doublelist"), ("torch.jit._pickle", "build_boollist")})
STORAGES = frozenset(f"{kind}Storage" for kind in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short",
                                                      "Char", "Byte", "Bool"))


class UnsafeTorchScript(ValueError):
    """A TorchScript file whose code does more than pure tensor operations: one line naming the file and the call."""


def _dotted(node) -> str:
    """``torch.ops.aten.relu`` for an attribute chain on a name; None for calls on an expression."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _allowed(call: ast.Call, own: set) -> bool:
    func = call.func
    name = _dotted(func)
    if isinstance(func, ast.Name):
        return func.id in BUILTINS or func.id in own
    if name is None or name.split(".")[0] not in ("torch", "ops", "__torch__"):
        if not isinstance(func, ast.Attribute):
            return False
        if func.attr in PURE_OPS:                                        # a pure op in method form
            return True
        # A method the archive defines (forward, ...), unless it shadows a tensor method that is not a pure op: a
        # crafted archive could define a dummy method of that name and then call the tensor's own.
        return func.attr in own and not hasattr(_tensor_type(), func.attr)
    parts = name.split(".")
    if parts[0] == "torch" and parts[1:2] == ["ops"]:
        parts = parts[1:]
    if parts[0] == "torch" and len(parts) == 2:
        return parts[1] in PURE_OPS
    if parts[0] == "ops" and len(parts) == 3:
        return (parts[1] == "aten" and parts[2] in PURE_OPS) or (parts[1] == "prim" and parts[2] in PRIM_OPS)
    return parts[0] == "__torch__" and parts[-1] in own                   # a function the archive defines


def _tensor_type():
    import torch
    return torch.Tensor


def _code_files(archive: zipfile.ZipFile) -> dict:
    return {name: archive.read(name) for name in archive.namelist()
            if "/code/" in name and name.endswith(".py")}


def _check_code(path: str, files: dict) -> None:
    trees = {}
    for name, source in files.items():
        try:
            trees[name] = ast.parse(source.decode("utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            raise UnsafeTorchScript(f"TorchScript file {path}: its code {name} cannot be read, so it cannot be checked; "
                                    f"refused") from None
    own = {node.name for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    own -= FORBIDDEN_METHODS | {name for name in own if name.startswith("__") and name != "__init__"}
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in FORBIDDEN_METHODS:
                raise UnsafeTorchScript(f"TorchScript file {path} defines {node.name} (in {name}), which runs when the "
                                        f"file is loaded: refused (the kit loads only pure tensor code)")
            if isinstance(node, ast.Call) and not _allowed(node, own):
                call = ast.unparse(node.func)
                raise UnsafeTorchScript(f"TorchScript file {path} calls {call} (in {name}, line {node.lineno}), "
                                        f"which is not a pure tensor operation: refused")


def _check_pickles(path: str, archive: zipfile.ZipFile) -> None:
    for name in archive.namelist():
        if not name.endswith(".pkl"):
            continue
        try:
            ops = list(pickletools.genops(archive.read(name)))
        except Exception:                      # noqa: BLE001 - any malformed pickle is refused the same way
            raise UnsafeTorchScript(f"TorchScript file {path}: {name} is not a readable pickle; refused") from None
        for op, arg, _ in ops:
            if op.name == "GLOBAL":
                module, _, attr = arg.partition(" ")
                if not ((module, attr) in PICKLE_GLOBALS or (module == "torch" and attr in STORAGES)
                        or module == "__torch__" or module.startswith("__torch__.")):   # __torch__.X: a class
                    # defined in a script's __main__ or in a function
                    raise UnsafeTorchScript(f"TorchScript file {path}: {name} refers to {module}.{attr}, which is not a "
                                            f"tensor, a storage or one of the archive's classes: refused")
            elif op.name in ("STACK_GLOBAL", "INST", "OBJ"):       # TorchScript's own pickler never writes these
                raise UnsafeTorchScript(f"TorchScript file {path}: {name} looks up objects by name ({op.name}), which "
                                        f"TorchScript never writes: refused")


def check_torchscript(path: str) -> None:
    """Raise UnsafeTorchScript (one line naming ``path`` and the offending call) unless the TorchScript archive at
    ``path`` holds only pure tensor code; a file that is not a zip archive is left to the loader to refuse."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return
    with archive:
        files = _code_files(archive)
        if not files:
            raise UnsafeTorchScript(f"TorchScript file {path} holds no code/ directory: not a TorchScript archive the "
                                    f"kit can check; refused")
        _check_code(path, files)
        _check_pickles(path, archive)
