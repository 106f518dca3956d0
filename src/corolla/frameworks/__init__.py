"""Framework adapters: model weights of NumPy, PyTorch and scikit-learn <-> ArrayRecord.

Each adapter copies nothing it does not have to; where it copies, its docstring says why.
PyTorch (extra ``torch``) and scikit-learn (extra ``sklearn``) are imported only when one
of their functions is called, so importing this package costs neither.
"""

from ._numpy import arrays_from_numpy, arrays_to_numpy
from ._sklearn import arrays_from_sklearn, init_sklearn_linear, set_sklearn_arrays
from ._torch import arrays_from_torch, arrays_to_torch, load_torch_arrays

__all__ = [
    "arrays_from_numpy",
    "arrays_from_sklearn",
    "arrays_from_torch",
    "arrays_to_numpy",
    "arrays_to_torch",
    "init_sklearn_linear",
    "load_torch_arrays",
    "set_sklearn_arrays",
]
