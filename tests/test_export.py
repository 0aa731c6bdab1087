"""Export: ``torch.export`` of wrapped and materialized models, ``torch.jit.trace`` of materialized
ones (the wrapper's ``functional_call`` is not traceable by TorchScript; materialize first)."""

import pytest
import torch

from hyper import Hyper, materialize, wrap
from models import create_model
from targets import ResNet18Style

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("make", [lambda: create_model("hyper_wrn10_1", num_classes=5), lambda: wrap(ResNet18Style(), Hyper(embedding_dim=4))])
def test_torch_export_of_wrapped_and_materialized(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 3, 16, 16)
    expected = model(x)
    exported = torch.export.export(model, (x,)).module()
    assert torch.allclose(exported(x), expected, atol=1e-6)
    plain = materialize(model).eval()
    assert torch.allclose(torch.export.export(plain, (x,)).module()(x), expected, atol=1e-5)
    traced = torch.jit.trace(plain, (x,))
    other = torch.randn(3, 3, 16, 16)  # another batch size: the trace is not tied to its example
    assert torch.allclose(traced(other), plain(other), atol=1e-6)
