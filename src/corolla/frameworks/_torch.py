"""PyTorch adapter: a module's ``state_dict`` <-> :class:`~corolla.core.ArrayRecord`.

torch is the optional extra ``torch``; it is imported when a function here is called, never
when :mod:`corolla.frameworks` is imported.

Copies, and why
---------------
- :func:`arrays_from_torch` copies nothing for CPU tensors: the record views the tensors'
  memory, read-only from the record's side. The module can still change that memory (an
  optimizer step, ``load_state_dict``), and the record then changes with it; pass
  ``copy=True`` for a snapshot of a module that keeps training.
- Records hold read-only arrays (possibly in shared memory, mapped read-only), and PyTorch
  has no read-only tensors: writing to a tensor made with ``torch.from_numpy`` from such an
  array is undefined behaviour. So :func:`arrays_to_torch` copies each array into fresh,
  writable memory, while :func:`load_torch_arrays` hands ``load_state_dict`` temporary
  tensors that view the record, which it only reads: the arrays are copied once, straight
  into the module's own tensors.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import ArrayRecord, ConfigError, MissingExtraError, RecordError

if TYPE_CHECKING:
    import torch

__all__ = ["arrays_from_torch", "arrays_to_torch", "load_torch_arrays"]


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("torch", "torch") from exc


def _tensor_to_numpy(name: str, tensor: torch.Tensor, copy: bool) -> np.ndarray[Any, Any]:
    import torch

    if tensor.layout != torch.strided or tensor.is_quantized:
        raise RecordError(
            f"state_dict entry {name!r} is a {tensor.layout} "
            f"{'quantized ' if tensor.is_quantized else ''}tensor; only dense tensors "
            "can become arrays (convert it, e.g. with .to_dense() or .dequantize())"
        )
    try:
        # resolve_conj/resolve_neg return the tensor itself unless a lazy view bit is set.
        cpu = tensor.detach().cpu().resolve_conj().resolve_neg()
        array: np.ndarray[Any, Any] = cpu.numpy()
    except TypeError as exc:
        raise RecordError(
            f"state_dict entry {name!r} has dtype {tensor.dtype}, which NumPy cannot hold; "
            "convert the model first, e.g. model.float()"
        ) from exc
    except (RuntimeError, NotImplementedError) as exc:
        raise RecordError(
            f"state_dict entry {name!r} on device {tensor.device} cannot be read: {exc}"
        ) from exc
    return array.copy() if copy else array


def arrays_from_torch(
    source: torch.nn.Module | Mapping[str, torch.Tensor], *, copy: bool = False
) -> ArrayRecord:
    """The entries of a module's ``state_dict`` (or of a state dict) as an ArrayRecord.

    Names and order are those of the state dict, buffers included (e.g. BatchNorm's
    ``running_mean``, ``running_var`` and int64 ``num_batches_tracked``), each with its
    dtype and shape.

    Parameters
    ----------
    source
        A module, or a mapping of names to tensors such as ``module.state_dict()``.
    copy
        By default a CPU tensor is not copied: the record views its memory, so later
        in-place changes to the module show through the record. ``copy=True`` takes a
        snapshot. Tensors on other devices are always copied to the CPU.

    Returns
    -------
    ArrayRecord
        One array per state dict entry.

    Raises
    ------
    MissingExtraError
        If torch is not installed (extra ``torch``).
    ConfigError
        If ``source`` is neither a module nor a mapping.
    RecordError
        If an entry is not a dense tensor of a dtype NumPy holds (``bfloat16`` and
        ``complex32`` are not; convert the model first), or cannot be read from its device.
    """
    _require_torch()
    import torch

    if isinstance(source, torch.nn.Module):
        state: Mapping[str, Any] = source.state_dict()
    elif isinstance(source, Mapping):
        state = source
    else:
        raise ConfigError(
            f"arrays_from_torch takes a torch.nn.Module or a state dict, "
            f"got {type(source).__name__}"
        )
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise RecordError(
                f"state_dict entry {name!r} is a {type(tensor).__name__}, not a tensor"
            )
        arrays[name] = _tensor_to_numpy(name, tensor, copy)
    return ArrayRecord(arrays)


def _torch_compatible(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``array`` itself, or a copy torch can wrap (native byte order, no negative strides)."""
    if array.dtype.isnative and all(stride >= 0 for stride in array.strides):
        return array
    return np.array(array, dtype=array.dtype.newbyteorder("="), order="C")


def _viewing_tensor(array: np.ndarray[Any, Any]) -> torch.Tensor:
    """A tensor over ``array``'s memory, which may be read-only: the caller must only read it."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The given NumPy array is not writable", category=UserWarning
        )
        return torch.from_numpy(_torch_compatible(array))


def arrays_to_torch(
    record: ArrayRecord, *, device: str | torch.device | None = None
) -> collections.OrderedDict[str, torch.Tensor]:
    """The record's arrays as a state dict of new tensors, in the record's order.

    Each tensor owns fresh, writable memory (a copy of the array), with the array's dtype
    and shape. To load a record into a module, :func:`load_torch_arrays` saves that copy.

    Parameters
    ----------
    device
        Where to put the tensors (default: the CPU).

    Raises
    ------
    MissingExtraError
        If torch is not installed (extra ``torch``).
    ConfigError
        If the tensors cannot be put on ``device`` (unknown or unavailable device).
    """
    _require_torch()
    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
    for name, array in record.items():
        tensor = _viewing_tensor(array)
        if device is not None:
            try:
                tensor = tensor.to(device)
            except (RuntimeError, AssertionError) as exc:  # a CPU-only build asserts on CUDA
                raise ConfigError(f"cannot put tensors on device {device!r}: {exc}") from exc
        # .to() onto another device copies; on the CPU the tensor still views the record.
        out[name] = tensor.clone() if tensor.device.type == "cpu" else tensor
    return out


def load_torch_arrays(module: torch.nn.Module, record: ArrayRecord, *, strict: bool = True) -> None:
    """Load a record into ``module`` (its parameters and buffers), in place.

    Arrays are matched by name and copied once into the module's tensors, cast to their
    dtypes as ``load_state_dict`` does. The record is not changed and the module keeps no
    reference to it.

    Parameters
    ----------
    strict
        If true, the record's names must be exactly the module's state dict names. If
        false, names only in one of them are skipped.

    Raises
    ------
    MissingExtraError
        If torch is not installed (extra ``torch``).
    RecordError
        If, with ``strict``, names are missing from the record or unknown to the module, or
        if an array's shape differs from its tensor's; the message lists every problem, and
        the module is left unchanged.
    """
    _require_torch()
    expected = module.state_dict()
    missing = [name for name in expected if name not in record]
    unexpected = [name for name in record if name not in expected]
    mismatched = [
        f"{name!r} has shape {tuple(record[name].shape)} in the record, "
        f"{tuple(expected[name].shape)} in the model"
        for name in record
        if name in expected and tuple(record[name].shape) != tuple(expected[name].shape)
    ]
    problems = []
    if strict and missing:
        problems.append(f"missing from the record: {missing}")
    if strict and unexpected:
        problems.append(f"not in the model: {unexpected}")
    problems.extend(mismatched)
    if problems:
        raise RecordError(
            f"the record does not fit {type(module).__name__}: " + "; ".join(problems)
        )
    tensors = collections.OrderedDict(
        (name, _viewing_tensor(array)) for name, array in record.items() if name in expected
    )
    try:
        module.load_state_dict(tensors, strict=strict)
    except RuntimeError as exc:
        raise RecordError(f"cannot load the record into {type(module).__name__}: {exc}") from exc
