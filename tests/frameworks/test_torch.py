from __future__ import annotations

import collections
import warnings
from typing import Any

import numpy as np
import pytest

from corolla.core import ArrayRecord, ConfigError, RecordError, decode_array, encode_array
from corolla.frameworks import arrays_from_torch, arrays_to_torch, load_torch_arrays

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


class Net(torch.nn.Module):  # type: ignore[misc]
    """Parameters and buffers of several dtypes: float weights, BatchNorm stats, an int64."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 3)
        self.bn = torch.nn.BatchNorm2d(3)
        self.fc = torch.nn.Linear(12, 2)

    def forward(self, x: Any) -> Any:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.flatten(1))


def make_net(seed: int) -> Net:
    torch.manual_seed(seed)
    net = Net()
    # Non-trivial buffers: one training step updates the BatchNorm statistics.
    net.train()
    net(torch.randn(4, 1, 4, 4))
    net.eval()
    return net


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(
        sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa
    )


# arrays_from_torch


def test_record_has_every_state_dict_entry_in_order_with_its_dtype() -> None:
    net = make_net(0)
    state = net.state_dict()

    record = arrays_from_torch(net)

    assert list(record) == list(state)
    assert "bn.running_mean" in record
    assert record["bn.num_batches_tracked"].dtype == np.int64
    assert int(record["bn.num_batches_tracked"]) == 1
    for name, tensor in state.items():
        assert record[name].shape == tuple(tensor.shape)
        assert np.array_equal(record[name], tensor.numpy())
    assert record["conv.weight"].dtype == np.float32


def test_cpu_tensors_are_not_copied() -> None:
    net = make_net(0)

    record = arrays_from_torch(net)

    for name, tensor in net.state_dict().items():
        assert record[name].__array_interface__["data"][0] == tensor.data_ptr()
    assert np.shares_memory(record["fc.weight"], net.fc.weight.detach().numpy())


def test_without_copy_training_shows_through_and_copy_takes_a_snapshot() -> None:
    net = make_net(0)
    view = arrays_from_torch(net)
    snapshot = arrays_from_torch(net, copy=True)
    before = net.fc.bias.detach().clone()

    with torch.no_grad():
        net.fc.bias.add_(1.0)

    assert np.array_equal(view["fc.bias"], (before + 1.0).numpy())
    assert np.array_equal(snapshot["fc.bias"], before.numpy())
    assert not np.shares_memory(snapshot["fc.weight"], net.fc.weight.detach().numpy())


def test_a_state_dict_works_like_its_module() -> None:
    net = make_net(0)

    assert arrays_from_torch(net.state_dict()) == arrays_from_torch(net)


def test_parameters_that_require_grad_are_detached() -> None:
    weight = torch.randn(2, 2, requires_grad=True)

    record = arrays_from_torch({"w": weight})

    assert np.array_equal(record["w"], weight.detach().numpy())


@pytest.mark.parametrize(
    "dtype", [torch.bool, torch.int8, torch.uint8, torch.int32, torch.float16, torch.float64]
)
def test_dtypes_survive_a_round_trip(dtype: Any) -> None:
    tensor = (torch.arange(6) % 3).reshape(2, 3).to(dtype)

    back = arrays_to_torch(arrays_from_torch({"t": tensor}))

    assert back["t"].dtype == dtype
    assert torch.equal(back["t"], tensor)


def test_lazy_conjugate_and_negative_views_are_resolved() -> None:
    z = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)

    record = arrays_from_torch({"conj": z.conj(), "neg": torch._neg_view(z)})

    assert np.array_equal(record["conj"], np.array([1 - 2j, 3 + 4j], np.complex64))
    assert np.array_equal(record["neg"], np.array([-1 - 2j, -3 + 4j], np.complex64))


def test_bfloat16_is_rejected_with_a_hint() -> None:
    with pytest.raises(RecordError, match=r"'w' has dtype torch.bfloat16.*model.float\(\)"):
        arrays_from_torch({"w": torch.zeros(2, dtype=torch.bfloat16)})


def test_sparse_tensors_are_rejected_with_a_hint() -> None:
    with pytest.raises(RecordError, match=r"'w' is a torch.sparse_coo.*to_dense"):
        arrays_from_torch({"w": torch.zeros(2, 2).to_sparse()})


def test_non_tensor_entries_are_rejected() -> None:
    with pytest.raises(RecordError, match="'extra' is a str, not a tensor"):
        arrays_from_torch({"extra": "x"})  # type: ignore[dict-item]


def test_other_sources_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"torch\.nn\.Module or a state dict, got list"):
        arrays_from_torch([torch.zeros(1)])  # type: ignore[arg-type]


# arrays_to_torch


def test_tensors_are_writable_copies_in_record_order() -> None:
    record = arrays_from_torch(make_net(0), copy=True)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable NumPy array" warning
        tensors = arrays_to_torch(record)

    assert isinstance(tensors, collections.OrderedDict)
    assert list(tensors) == list(record)
    for name, tensor in tensors.items():
        assert tensor.data_ptr() != record[name].__array_interface__["data"][0]
        assert np.array_equal(tensor.numpy(), record[name])
    tensors["fc.bias"].add_(1.0)
    assert not np.array_equal(tensors["fc.bias"].numpy(), record["fc.bias"])


def test_device_cpu_also_copies() -> None:
    record = ArrayRecord({"w": np.arange(3.0)})

    tensor = arrays_to_torch(record, device="cpu")["w"]

    assert tensor.data_ptr() != record["w"].__array_interface__["data"][0]
    assert tensor.tolist() == [0.0, 1.0, 2.0]


def test_an_unknown_device_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot put tensors on device 'nowhere'"):
        arrays_to_torch(ArrayRecord({"w": np.zeros(1)}), device="nowhere")


def test_big_endian_and_reversed_arrays_convert() -> None:
    record = ArrayRecord({"be": np.arange(4, dtype=">f8"), "rev": np.arange(4.0)[::-1]})

    tensors = arrays_to_torch(record)

    assert tensors["be"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert tensors["rev"].tolist() == [3.0, 2.0, 1.0, 0.0]


# load_torch_arrays


def test_loading_makes_an_identical_model() -> None:
    source, target = make_net(0), make_net(1)
    x = torch.randn(2, 1, 4, 4)

    load_torch_arrays(target, arrays_from_torch(source))

    assert state_equal(source, target)
    assert torch.equal(source(x), target(x))


def test_loading_copies_into_the_module_once_and_keeps_no_reference() -> None:
    source, target = make_net(0), make_net(1)
    record = arrays_from_torch(source, copy=True)
    pointers = {k: t.data_ptr() for k, t in target.state_dict().items()}

    load_torch_arrays(target, record)
    with torch.no_grad():
        target.fc.weight.add_(1.0)

    assert {k: t.data_ptr() for k, t in target.state_dict().items()} == pointers
    assert np.array_equal(record["fc.weight"], source.fc.weight.detach().numpy())


def test_loading_read_only_decoded_arrays_works() -> None:
    source, target = make_net(0), make_net(1)
    # Decoded arrays view immutable bytes, as arrays received over the wire do.
    decoded = ArrayRecord(
        {k: decode_array(encode_array(a)) for k, a in arrays_from_torch(source).items()}
    )
    assert not decoded["fc.weight"].flags.writeable

    load_torch_arrays(target, decoded)

    assert state_equal(source, target)


def test_loading_big_endian_and_reversed_arrays_works() -> None:
    net = torch.nn.Linear(3, 1)
    record = ArrayRecord(
        {"weight": np.array([[1, 2, 3]], dtype=">f4"), "bias": np.array([4.0, 5.0])[:0:-1][:1]}
    )

    load_torch_arrays(net, record)

    assert net.weight.tolist() == [[1.0, 2.0, 3.0]]
    assert net.bias.tolist() == [5.0]
    assert net.bias.dtype == torch.float32  # cast to the module's dtype


def test_missing_and_unexpected_names_are_all_reported() -> None:
    net = make_net(0)
    before = arrays_from_torch(net, copy=True)
    record = arrays_from_torch(make_net(1))
    bad = ArrayRecord({k: v for k, v in record.items() if k != "fc.bias"} | {"extra": np.zeros(1)})

    with pytest.raises(RecordError) as info:
        load_torch_arrays(net, bad)

    message = str(info.value)
    assert "Net" in message
    assert "missing from the record: ['fc.bias']" in message
    assert "not in the model: ['extra']" in message
    assert arrays_from_torch(net) == before  # unchanged


def test_shape_mismatches_name_the_entry_and_both_shapes() -> None:
    net = make_net(0)
    record = arrays_from_torch(make_net(1)) | {"fc.weight": np.zeros((3, 12), np.float32)}

    with pytest.raises(
        RecordError, match=r"'fc.weight' has shape \(3, 12\) in the record, \(2, 12\)"
    ):
        load_torch_arrays(net, record)


def test_non_strict_loading_skips_unknown_and_missing_names() -> None:
    net = torch.nn.Linear(2, 1)
    record = ArrayRecord({"weight": np.ones((1, 2), np.float32), "other": np.zeros(3)})
    bias = net.bias.detach().clone()

    load_torch_arrays(net, record, strict=False)

    assert net.weight.tolist() == [[1.0, 1.0]]
    assert torch.equal(net.bias, bias)


def test_non_strict_loading_still_rejects_wrong_shapes() -> None:
    net = torch.nn.Linear(2, 1)

    with pytest.raises(RecordError, match="'weight' has shape"):
        load_torch_arrays(net, ArrayRecord({"weight": np.ones((2, 2))}), strict=False)


def test_load_errors_are_value_errors_for_plain_except_clauses() -> None:
    with pytest.raises(ValueError):
        load_torch_arrays(torch.nn.Linear(2, 1), ArrayRecord())
