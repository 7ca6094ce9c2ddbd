"""qsim.nn.functional: the simulated accumulator equals a slow reference loop bit for bit.

The reference takes each output element's products in order, sums `chunk` of them in float64 and
rounds the running sum to the accumulator format after every chunk, one Python float at a time.
With chunk=1 every float32 product is exact in float64, so the match is exact for any float32 data;
with chunk>1 the data are bfloat16 values, whose chunk sums are exact in float64 whatever the order
(the vectorised code sums them with a matmul, the reference left to right)."""
import itertools

import pytest
import torch
import torch.nn.functional as F

import qsim
from qsim.nn import functional as qF


def qfloat(value: float, fmt, rounding: str) -> float:
    return qsim.quantize(torch.tensor([value], dtype=torch.float64), fmt, rounding).item()


def reference_dot(xs, ws, init, fmt, chunk, rounding):
    """Products in order; the running sum is rounded after every `chunk` of them."""
    s = 0.0 if init is None else qfloat(init, fmt, rounding)
    for start in range(0, len(xs), chunk):
        partial = 0.0
        for a, b in zip(xs[start:start + chunk], ws[start:start + chunk]):
            partial += a * b
        s = qfloat(s + partial, fmt, rounding)
    return s


def reference_linear(x, w, b, fmt, chunk, rounding):
    out = torch.empty(x.shape[0], w.shape[0], dtype=torch.float64)
    for n, m in itertools.product(range(x.shape[0]), range(w.shape[0])):
        out[n, m] = reference_dot(x[n].tolist(), w[m].tolist(), None if b is None else b[m].item(), fmt, chunk, rounding)
    return out.float()


def reference_conv2d(x, w, b, stride, padding, dilation, groups, fmt, chunk, rounding):
    """Direct loops over output positions; products in (in-channel, kernel row, kernel column) order."""
    x = F.pad(x, (padding, padding, padding, padding))
    n_, c, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    oh = (h - dilation * (kh - 1) - 1) // stride + 1
    ow = (wd - dilation * (kw - 1) - 1) // stride + 1
    out = torch.empty(n_, cout, oh, ow)
    for n, o, i, j in itertools.product(range(n_), range(cout), range(oh), range(ow)):
        g = o // (cout // groups)
        xs, ws = [], []
        for ci, r, s in itertools.product(range(cin_g), range(kh), range(kw)):
            xs.append(x[n, g * cin_g + ci, i * stride + r * dilation, j * stride + s * dilation].item())
            ws.append(w[o, ci, r, s].item())
        out[n, o, i, j] = reference_dot(xs, ws, None if b is None else b[o].item(), fmt, chunk, rounding)
    return out


def bf16_randn(*shape):
    return torch.randn(*shape).bfloat16().float()


@pytest.mark.parametrize("fmt,rounding", [("fp16", "nearest"), ("bf16", "toward_zero"), ("fp8_e5m2", "nearest"),
                                          ("fixed<12,6>", "nearest")])
def test_linear_chunk1_matches_sequential_reference_on_float32_data(fmt, rounding):
    torch.manual_seed(0)
    x, w, b = torch.randn(3, 23), torch.randn(4, 23), torch.randn(4)
    got = qF.linear(x, w, b, acc=fmt, chunk=1, rounding=rounding)
    assert torch.equal(got, reference_linear(x, w, b, fmt, 1, rounding))


@pytest.mark.parametrize("chunk", [2, 5, 23, 64])
def test_linear_chunked_matches_reference(chunk):
    torch.manual_seed(1)
    x, w = bf16_randn(3, 23), bf16_randn(4, 23)
    got = qF.linear(x, w, None, acc="fp8_e4m3", chunk=chunk)
    assert torch.equal(got, reference_linear(x, w, None, "fp8_e4m3", chunk, "nearest"))


def test_matmul_batched_broadcast_matches_reference():
    torch.manual_seed(2)
    a, b = torch.randn(2, 1, 3, 9), torch.randn(3, 9, 2)
    got = qF.matmul(a, b, acc="bf16", chunk=1)
    assert got.shape == (2, 3, 3, 2)
    for i, j in itertools.product(range(2), range(3)):
        want = reference_linear(a[i, 0], b[j].t(), None, "bf16", 1, "nearest")
        assert torch.equal(got[i, j], want)


def test_matmul_vectors_follow_torch_shapes():
    torch.manual_seed(3)
    v, m = torch.randn(7), torch.randn(7, 4)
    assert qF.matmul(v, m, acc="fp16").shape == torch.matmul(v, m).shape
    assert qF.matmul(m.t(), v, acc="fp16").shape == (4,)
    assert qF.matmul(v, v, acc="fp16").shape == ()


@pytest.mark.parametrize("stride,padding,dilation,groups,chunk",
                         [(1, 1, 1, 1, 1), (2, 0, 1, 2, 1), (1, 2, 2, 1, 4), (1, 1, 1, 4, 3)])
def test_conv2d_matches_direct_loop_reference(stride, padding, dilation, groups, chunk):
    torch.manual_seed(4)
    x, w, b = bf16_randn(2, 4, 6, 6), bf16_randn(4, 4 // groups, 3, 3), bf16_randn(4)
    got = qF.conv2d(x, w, b, stride, padding, dilation, groups, acc="fp16", chunk=chunk)
    want = reference_conv2d(x, w, b, stride, padding, dilation, groups, "fp16", chunk, "nearest")
    assert torch.equal(got, want)


def test_conv1d_and_conv3d_reduce_to_the_same_accumulator():
    """conv1d / conv3d on inputs with singleton extra dims equal conv2d (same product order)."""
    torch.manual_seed(5)
    x, w = torch.randn(2, 3, 9), torch.randn(4, 3, 3)
    want = qF.conv2d(x[:, :, None], w[:, :, None], None, (1, 2), 0, 1, 1, acc="fp16")[:, :, 0]
    assert torch.equal(qF.conv1d(x, w, None, 2, 0, 1, 1, acc="fp16"), want)
    x3, w3 = torch.randn(1, 2, 1, 5, 5), torch.randn(3, 2, 1, 3, 3)
    want3 = qF.conv2d(x3[:, :, 0], w3[:, :, 0], None, 1, 1, 1, 1, acc="bf16", chunk=2)
    assert torch.equal(qF.conv3d(x3, w3, None, 1, (0, 1, 1), 1, 1, acc="bf16", chunk=2)[:, :, 0], want3)


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_same_padding_and_wide_accumulator_match_exact_sums():
    """A float32 accumulator over one chunk of bf16 products is the exact sum rounded once to float32
    (computed here by torch in float64), including padding='same' with an even kernel."""
    torch.manual_seed(6)
    x, w = bf16_randn(1, 2, 7, 7), bf16_randn(3, 2, 4, 4)
    want = F.conv2d(x.double(), w.double(), padding="same").float()
    assert torch.equal(qF.conv2d(x, w, padding="same", acc="fp32", chunk=32), want)
    xl, wl = bf16_randn(5, 30), bf16_randn(6, 30)
    assert torch.equal(qF.linear(xl, wl, acc="fp32", chunk=30), F.linear(xl.double(), wl.double()).float())


def test_narrow_accumulator_loses_more_with_sequential_sums():
    """fp16 accumulation error grows when the running sum is rounded after every product (swamping)."""
    torch.manual_seed(7)
    x, w = torch.rand(16, 2048), torch.rand(8, 2048)
    exact = F.linear(x.double(), w.double())
    err = {k: (qF.linear(x, w, acc="fp16", chunk=k).double() - exact).abs().mean().item() for k in (1, 64)}
    assert err[1] > 4 * err[64] > 0


def test_gradients_are_those_of_the_exact_op():
    torch.manual_seed(8)
    x, w, b = (torch.randn(4, 10, requires_grad=True), torch.randn(3, 10, requires_grad=True),
               torch.randn(3, requires_grad=True))
    g = torch.randn(4, 3)
    qF.linear(x, w, b, acc="fp8_e4m3").backward(g)
    got = (x.grad, w.grad, b.grad)
    x.grad = w.grad = b.grad = None
    F.linear(x, w, b).backward(g)
    for a, e in zip(got, (x.grad, w.grad, b.grad)):
        assert torch.allclose(a, e, rtol=1e-6, atol=1e-6)
    xc, wc = torch.randn(1, 2, 5, 5, requires_grad=True), torch.randn(3, 2, 3, 3, requires_grad=True)
    gc = torch.randn(1, 3, 5, 5)
    qF.conv2d(xc, wc, padding=1, acc="fp16", chunk=2).backward(gc)
    got = (xc.grad, wc.grad)
    xc.grad = wc.grad = None
    F.conv2d(xc, wc, padding=1).backward(gc)
    for a, e in zip(got, (xc.grad, wc.grad)):
        assert torch.allclose(a, e, rtol=1e-5, atol=1e-5)


def test_no_accumulator_is_torch():
    torch.manual_seed(9)
    x, w = torch.randn(3, 5), torch.randn(2, 5)
    assert torch.equal(qF.linear(x, w), F.linear(x, w))
    assert torch.equal(qF.matmul(x, w.t()), x @ w.t())


def test_bad_arguments_raise():
    x, w = torch.randn(2, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="chunk"):
        qF.linear(x, w, acc="fp16", chunk=0)
    with pytest.raises(ValueError, match="acc"):
        qF.linear(x, w, acc="fp99")
    with pytest.raises(ValueError, match="rounding"):
        qF.linear(x, w, acc="fp16", rounding="ceil")
    with pytest.raises(ValueError, match="x"):
        qF.conv2d(torch.randn(3, 5, 5), torch.randn(2, 3, 3, 3), acc="fp16")
