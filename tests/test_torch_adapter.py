"""fastopt.torch against torch.optim: the same training run, the same losses; and what it refuses.

Skipped without torch.  Each parity test trains the same small model (six
parameter tensors, a LayerNorm among them) for 200 mini-batch iterations
with ``torch.optim.X`` and with ``fastopt.torch.X``: in float64 (torch's
default dtype float64, as torch keeps its scalar state in it) the losses
agree to 1e-10, in float32 to 1e-3 (float32 rounding, amplified along 200
steps).  Learning rates are kept where this problem contracts rounding
differences rather than amplifying them (see ``tame``), so the comparison
does not depend on the BLAS build or the thread count.
"""
import copy
import pickle

import numpy as np
import pytest
from test_kernels import OPTIMIZERS

torch = pytest.importorskip("torch")
import fastopt  # noqa: E402
import fastopt.torch as ft  # noqa: E402

STEPS = 200
RTOL = {torch.float32: 1e-3, torch.float64: 1e-10}
TORCH_RULES = [name for name in OPTIMIZERS if hasattr(torch.optim, name) and hasattr(ft, name)]
CASES = [pytest.param(name, config, id=f"{name}-{config}") for name in TORCH_RULES
         for config in OPTIMIZERS[name][2]]


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    before = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    yield request.param
    torch.set_default_dtype(before)


def make_model(dtype=None, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.LayerNorm(16),
                                torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return model.to(dtype or torch.get_default_dtype())


def data(dtype):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(64, 6, generator=g, dtype=dtype)
    return X, torch.sin(X.sum(1, keepdim=True))


def train(model, opt, steps=STEPS, *, scheduler=None, set_to_none=True, clip=None, start=0):
    """``steps`` mini-batch iterations; the losses."""
    X, y = data(next(model.parameters()).dtype)
    losses = []
    for i in range(start, start + steps):
        batch = slice(i % 4 * 16, i % 4 * 16 + 16)
        opt.zero_grad(set_to_none=set_to_none)
        loss = torch.mean((model(X[batch]) - y[batch]) ** 2)
        loss.backward()
        if clip == "torch":
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        elif clip == "fastopt":
            opt.clip_grad_norm_(0.5)
        opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return np.array(losses)


def tame(name, config):
    """``config`` with a learning rate of at most 1e-3, where this problem contracts rounding differences.

    At larger rates some configurations (Adam with betas=(0.3, 0.9) at 0.01,
    RMSprop at its default 0.01) amplify a one-ulp difference in a matmul
    (which BLAS build, which thread count) to 1e-3 in 200 steps; at 1e-3
    every case stays within 1e-4 in float32 (most within 1e-6).
    """
    return {**config, "lr": min(config.get("lr", 1e-3), 1e-3)}


def assert_same_losses(ours, theirs, dtype):
    np.testing.assert_allclose(ours, theirs, rtol=RTOL[dtype], atol=0)


@pytest.mark.parametrize("name, config", CASES)
def test_200_iterations_match_torch(name, config, dtype):
    config = tame(name, config)
    (tm, topt, _), (fm, fopt, _) = pair(name, lambda m: m.parameters(), config)
    assert_same_losses(train(fm, fopt), train(tm, topt), dtype)


def matrices_only(dtype=None, seed=0):
    """A model of matrices alone (no biases, no LayerNorm): what torch.optim.Muon takes."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16, bias=False), torch.nn.Tanh(), torch.nn.Linear(16, 8, bias=False),
                               torch.nn.Tanh(), torch.nn.Linear(8, 1, bias=False)).to(dtype or torch.get_default_dtype())


TENSOR_CASES = [("Adafactor", {}), ("Adafactor", dict(lr=1e-3, weight_decay=0.1, beta2_decay=-0.5, d=2.0)),
                ("Muon", dict(lr=0.01)), ("Muon", dict(lr=0.005, nesterov=False, weight_decay=0.0, momentum=0.9)),
                ("Muon", dict(lr=0.005, adjust_lr_fn="match_rms_adamw", ns_steps=3, eps=1e-5))]


@pytest.mark.parametrize("name, config", [pytest.param(n, c, id=f"{n}-{c}") for n, c in TENSOR_CASES])
def test_tensor_wise_rules_match_torch(name, config, dtype, monkeypatch):
    """Adafactor, and Muon with torch's bfloat16 Newton-Schulz iteration raised to the parameters' precision
    (as in test_tensor_rules.py); a state_dict round trip through torch's format halfway."""
    if not hasattr(torch.optim, name):
        pytest.skip(f"this torch has no torch.optim.{name}")
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self: self.clone())
    make = matrices_only if name == "Muon" else make_model
    model = make()
    theirs = train(model, getattr(torch.optim, name)(model.parameters(), **config))
    model = make()
    opt = getattr(ft, name)(model.parameters(), **config)
    head = train(model, opt, STEPS // 2)
    peer = getattr(torch.optim, name)(make().parameters(), **config)
    peer.load_state_dict(copy.deepcopy(opt.state_dict()))  # torch's own loader takes our state_dict
    resumed = getattr(ft, name)(model.parameters(), **config)
    resumed.load_state_dict(peer.state_dict())  # and ours takes torch's
    tail = train(model, resumed, STEPS // 2, start=STEPS // 2)
    assert_same_losses(np.concatenate([head, tail]), theirs, dtype)


def pair(name, make_params, config, scheduler=None):
    """(torch model, torch optimizer, torch scheduler), and the same with fastopt.torch."""
    out = []
    for module in (torch.optim, ft):
        model = make_model()
        opt = getattr(module, name)(make_params(model), **config)
        out.append((model, opt, scheduler(opt) if scheduler else None))
    return out


def two_groups(model):
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    return [{"params": weights, "weight_decay": 0.05}, {"params": biases, "lr": 3e-3}]


SCHEDULERS = {
    "none": None,
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5),
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=STEPS),
}


@pytest.mark.parametrize("schedule", SCHEDULERS)
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSprop"])
def test_groups_and_schedulers_match_torch(name, schedule, dtype):
    config = {"lr": 1e-3, **({"momentum": 0.9} if name == "SGD" else {})}
    (tm, topt, tsched), (fm, fopt, fsched) = pair(name, two_groups, config, SCHEDULERS[schedule])
    theirs = train(tm, topt, scheduler=tsched)
    ours = train(fm, fopt, scheduler=fsched)
    assert_same_losses(ours, theirs, dtype)
    assert [g["lr"] for g in fopt.param_groups] == [g["lr"] for g in topt.param_groups]


@pytest.mark.parametrize("clip", ["torch", "fastopt"])
@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_modes_and_clipping_match_torch(clip, set_to_none, dtype):
    (tm, topt, _), (fm, fopt, _) = pair("Adam", lambda m: m.parameters(), {"lr": 1e-2})
    theirs = train(tm, topt, set_to_none=set_to_none, clip="torch")
    ours = train(fm, fopt, set_to_none=set_to_none, clip=clip)
    assert_same_losses(ours, theirs, dtype)
    if not set_to_none:  # autograd accumulated into the arena itself: nothing was copied
        assert all(p.grad is e.grad for p, e in zip(fm.parameters(), fopt._entries))


@pytest.mark.parametrize("name", ["Adam", "NAdam", "SGD", "Adagrad"])
@pytest.mark.parametrize("direction", ["torch->fastopt", "fastopt->torch"])
def test_state_dict_round_trip_through_torch_format(name, direction, dtype):
    config = {"lr": 1e-3, **({"momentum": 0.9} if name == "SGD" else {})}
    first, second = (torch.optim, ft) if direction == "torch->fastopt" else (ft, torch.optim)
    model = make_model()
    opt = getattr(first, name)(two_groups(model), **config)
    head = train(model, opt, 100)
    saved = copy.deepcopy(opt.state_dict())
    resumed_model = make_model()
    resumed_model.load_state_dict(model.state_dict())
    resumed = getattr(second, name)(two_groups(resumed_model), **config)
    resumed.load_state_dict(saved)
    tail = train(resumed_model, resumed, 100, start=100)

    reference_model = make_model()
    reference = train(reference_model, getattr(torch.optim, name)(two_groups(reference_model), **config))
    assert_same_losses(np.concatenate([head, tail]), reference, dtype)


def test_state_dict_is_torchs_format():
    (tm, topt, _), (fm, fopt, _) = pair("Adam", two_groups, {"lr": 1e-3, "amsgrad": True})
    train(tm, topt, 3)
    train(fm, fopt, 3)
    ours, theirs = fopt.state_dict(), topt.state_dict()
    assert [sorted(g) for g in ours["param_groups"]] == [sorted(g) for g in theirs["param_groups"]]
    assert [g["params"] for g in ours["param_groups"]] == [g["params"] for g in theirs["param_groups"]]
    assert sorted(ours["state"]) == sorted(theirs["state"])
    for i, state in theirs["state"].items():
        assert sorted(ours["state"][i]) == sorted(state)
        for key, value in state.items():
            assert ours["state"][i][key].shape == value.shape and ours["state"][i][key].dtype == value.dtype, key
            torch.testing.assert_close(ours["state"][i][key], value)
    # the state view
    p = next(fm.parameters())
    assert p in fopt.state and len(fopt.state) == len(list(fm.parameters()))
    torch.testing.assert_close(fopt.state[p]["exp_avg"], topt.state[next(tm.parameters())]["exp_avg"])
    assert fopt.state[p]["step"].item() == 3


def test_parameters_without_gradients_are_skipped_as_torch_skips_them(dtype):
    """A frozen layer, and one that joins later: torch skips a parameter whose .grad is None (no step, no decay)."""
    runs = []
    for module in (torch.optim, ft):
        model = make_model()
        opt = module.AdamW(model.parameters(), lr=1e-2)
        model[3].weight.requires_grad_(False)
        losses = list(train(model, opt, 50))
        model[3].weight.requires_grad_(True)
        losses += list(train(model, opt, 50, start=50))
        runs.append((np.array(losses), model))
    assert_same_losses(runs[1][0], runs[0][0], dtype)
    for p, q in zip(runs[0][1].parameters(), runs[1][1].parameters()):
        torch.testing.assert_close(q, p, rtol=RTOL[dtype] * 10, atol=0)


def test_adoption_keeps_the_model_and_shares_memory():
    model = make_model(torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    X, _ = data(torch.float32)
    out = model(X)
    opt = ft.Adam(model.parameters())
    torch.testing.assert_close(model(X), out, rtol=0, atol=0)
    ps = opt._entries[0].paramset
    assert len(opt._paramsets) == 1 and ps.size == sum(p.numel() for p in before)
    for p, b, entry in zip(model.parameters(), before, opt._entries):
        assert torch.equal(p, b) and p.data_ptr() == entry.data.data_ptr()
    ps.data[:] = 0  # the arena is the model's memory
    assert all(not p.detach().any() for p in model.parameters())
    assert len(opt._runs) == 1  # one kernel call for the whole model


def test_replaced_grad_is_folded_in():
    model = make_model(torch.float32)
    opt = ft.SGD(model.parameters(), lr=0.1)
    ref = make_model(torch.float32)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for m, o in ((model, opt), (ref, ref_opt)):
        for p in m.parameters():
            p.grad = torch.full_like(p, 0.5)  # assigned by hand, not by autograd
        o.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert not any(p.grad is e.grad for p, e in zip(model.parameters(), opt._entries))  # .grad stays the user's
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is e.grad and not p.grad.any() for p, e in zip(model.parameters(), opt._entries))


def test_add_param_group_and_closure():
    model, extra = make_model(torch.float32), torch.nn.Linear(3, 2)
    ref, ref_extra = make_model(torch.float32), torch.nn.Linear(3, 2)
    ref_extra.load_state_dict(extra.state_dict())
    results = []
    for m, e, module in ((model, extra, ft), (ref, ref_extra, torch.optim)):
        opt = module.Adam(m.parameters(), lr=1e-2)
        train(m, opt, 5)
        opt.add_param_group({"params": e.parameters(), "lr": 1e-3})
        x = torch.ones(4, 3)

        def closure():
            opt.zero_grad()
            loss = m(torch.ones(4, 6)).sum() + e(x).sum()
            loss.backward()
            return loss
        results.append([opt.step(closure).item() for _ in range(5)])
        results.append(opt.state_dict()["state"][len(list(m.parameters()))]["step"].item())
    assert results[0] == pytest.approx(results[2], rel=1e-4)
    assert results[1] == results[3] == 5


# ------------------------------------------------------------------ refusals
def refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_refusals_before_anything_changes():
    p = torch.nn.Parameter(torch.randn(4, 3))
    address = p.data_ptr()
    refused(lambda: ft.Adam([p, torch.nn.Parameter(torch.zeros(2, device="meta"))]), ValueError,
            r"param_groups\[0\]\['params'\]\[1\] is on meta")
    refused(lambda: ft.Adam([p, torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))]), TypeError,
            "bfloat16; fastopt.torch takes float32 or float64")
    refused(lambda: ft.Adam([torch.nn.Parameter(torch.randn(3, 4).t())]), ValueError, "not contiguous")
    big = torch.randn(10)
    refused(lambda: ft.Adam([torch.nn.Parameter(big[2:5])]), ValueError, "view into a larger storage")
    refused(lambda: ft.Adam([p, torch.nn.Parameter(p.data)]), ValueError, r"shares its storage with param_groups")
    refused(lambda: ft.Adam([{"params": [p]}, {"params": [p]}]), ValueError, "may appear once")
    refused(lambda: ft.Adam([p], capturable=True), ValueError, "capturable=True is not supported")
    refused(lambda: ft.Adam([p], differentiable=True), ValueError, "differentiable=True is not supported")
    refused(lambda: ft.Adam([p], lr=-1.0), ValueError, "Invalid learning rate")  # torch's own check
    refused(lambda: ft.Lion([p], lr=-1.0), ValueError, "Invalid learning rate")
    refused(lambda: ft.Lion([p], bogus=1), TypeError, "bogus")
    assert p.data_ptr() == address  # nothing was adopted


def test_refused_gradients_and_detached_parameters():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = ft.Adam(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    refused(opt.step, ValueError, "sparse")
    model = make_model(torch.float32)
    opt = ft.Adam(model.parameters())
    model.double()
    train_loss = model(torch.ones(2, 6, dtype=torch.float64)).sum()
    train_loss.backward()
    refused(opt.step, RuntimeError, "no longer lives in the optimizer's arena")
    refused(lambda: copy.deepcopy(ft.Adam(make_model().parameters())), TypeError, "cannot be copied or pickled")
    refused(lambda: pickle.dumps(ft.Adam(make_model().parameters())), TypeError, "cannot be copied or pickled")


def test_bad_state_dicts_change_nothing():
    model = make_model(torch.float32)
    opt = ft.Adam(model.parameters(), lr=1e-3)
    train(model, opt, 3)
    good = opt.state_dict()
    bad = copy.deepcopy(good)
    bad["state"][0]["exp_avg"] = torch.zeros(5)
    refused(lambda: opt.load_state_dict(bad), ValueError, "exp_avg has 5 elements")
    bad = copy.deepcopy(good)
    bad["state"][0]["momentum"] = torch.zeros(1)
    refused(lambda: opt.load_state_dict(bad), ValueError, "does not keep")
    bad = copy.deepcopy(good)
    bad["param_groups"][0]["lr"] = -1.0
    refused(lambda: opt.load_state_dict(bad), ValueError, "Invalid learning rate")
    bad = copy.deepcopy(good)
    bad["param_groups"][0]["params"] = [0]
    refused(lambda: opt.load_state_dict(bad), ValueError, "does not match")
    after = opt.state_dict()
    assert after["param_groups"] == good["param_groups"]
    for i, state in good["state"].items():
        for key, value in state.items():
            assert torch.equal(after["state"][i][key], value)


def test_a_gradient_resized_through_data_is_refused():
    p = torch.nn.Parameter(torch.zeros(1 << 12))
    opt = ft.SGD([p], lr=1.0)
    p.grad = torch.ones(1 << 12)
    p.grad.data = torch.ones(4)  # torch lets .data change a gradient's size
    refused(opt.step, ValueError, r"\.grad is torch.float32\[4\], but its parameter is torch.float32\[4096\]")
    assert not p.detach().any()


def test_named_parameters_are_checked_like_the_others():
    try:
        torch.optim.Adam([("w", torch.nn.Parameter(torch.zeros(1)))])
    except Exception:
        pytest.skip("this torch takes no named parameters")
    base = torch.randn(4)
    named = [("a", torch.nn.Parameter(base[:2])), ("b", torch.nn.Parameter(torch.zeros(2)))]
    refused(lambda: ft.Adam(named), ValueError, r"\('a'\) is a view into a larger storage")
    refused(lambda: ft.Adam([("h", torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16)))]), TypeError,
            "bfloat16; fastopt.torch takes float32 or float64")


def test_adamw_decouples_whatever_a_state_dict_says():
    model = make_model(torch.float32)
    opt = ft.AdamW(model.parameters(), weight_decay=0.5)
    saved = torch.optim.Adam(make_model(torch.float32).parameters()).state_dict()  # decoupled_weight_decay=False
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True
    assert opt._engine.param_groups[0]["decoupled_weight_decay"] is True


def test_hyperparameters_edited_in_place_and_tensor_lr_reach_the_engine():
    (tm, topt, _), (fm, fopt, _) = pair("Adam", lambda m: m.parameters(), {"lr": 1e-3})
    for opt in (topt, fopt):
        opt.param_groups[0]["betas"] = [0.9, 0.999]
    train(tm, topt, 3)
    train(fm, fopt, 3)
    for opt in (topt, fopt):
        opt.param_groups[0]["betas"][0] = 0.5  # the list edited in place
        opt.param_groups[0]["lr"] = torch.tensor(2e-3)
    assert_same_losses(train(fm, fopt, 20, start=3), train(tm, topt, 20, start=3), torch.float32)
    assert fopt._engine.param_groups[0]["betas"] == (0.5, 0.999)


def test_zero_grad_without_none_zeroes_a_held_gradient_as_torch_does():
    model = make_model(torch.float32)
    opt = ft.SGD(model.parameters(), lr=0.1)
    model(torch.ones(2, 6)).sum().backward()
    held = next(model.parameters()).grad
    opt.zero_grad(set_to_none=False)
    assert not held.any() and next(model.parameters()).grad is opt._entries[0].grad


def test_optimizer_state_is_read_only():
    model = make_model(torch.float32)
    opt = ft.Adam(model.parameters())
    with pytest.raises(AttributeError, match="load_state_dict"):
        opt.state = {}


def test_the_core_never_imports_torch():
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
            "import numpy as np, fastopt, fastopt.nn, fastopt.optim.lr_scheduler\n"
            "ps = fastopt.ParamSet({'w': np.zeros(3)}); fastopt.AdamW(ps).step()\n"
            "try:\n    import fastopt.torch\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "fastopt[torch]"' in out


# --------------------------------------------------------------------- DLPack
class Producer:
    """A DLPack producer standing for another library's array: ``__dlpack__`` of a NumPy array, any device."""

    def __init__(self, array, device=(1, 0)):
        self.array, self.device = array, device

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.device


def test_dlpack_arrays_are_taken_zero_copy():
    w, g = torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    opt = fastopt.Adam([w], lr=0.1)
    opt.step([g])
    torch.testing.assert_close(w, torch.full((5,), -0.1, dtype=torch.float64))
    grads = [torch.full((3,), 4.0), torch.full((4,), 3.0)]
    assert fastopt.nn.clip_grad_norm_(grads, 1.0) == pytest.approx(np.sqrt(3 * 16 + 4 * 9))
    assert float(torch.cat(grads).norm()) == pytest.approx(1.0, rel=1e-5)
    ps = fastopt.ParamSet({"w": Producer(np.arange(3.0))})  # copied in, as a ParamSet copies any array
    np.testing.assert_array_equal(ps["w"], np.arange(3.0))
    x = torch.randn(8, 3, dtype=torch.float64)
    mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    out, _ = fastopt.nn.batch_norm_forward(x, running_mean=mean, running_var=var, momentum=0.5)
    torch.testing.assert_close(torch.from_numpy(out), torch.nn.functional.batch_norm(x, None, None, training=True))
    torch.testing.assert_close(mean, 0.5 * x.mean(0))  # the running statistics were updated in place
    half, half_grad = torch.zeros(4, dtype=torch.bfloat16), torch.ones(4, dtype=torch.bfloat16)
    fastopt.SGD([half], lr=0.5).step([half_grad])  # bfloat16, viewed as ml_dtypes.bfloat16
    assert half.tolist() == [-0.5] * 4
    array = np.zeros(3)
    opt = fastopt.SGD([Producer(array)], lr=1.0)
    opt.step([Producer(np.ones(3))])
    np.testing.assert_array_equal(array, -np.ones(3))


def test_dlpack_refusals_name_the_array():
    readonly = np.zeros(3)
    readonly.flags.writeable = False
    refused(lambda: fastopt.Adam([Producer(readonly)]), ValueError, r"params\[0\] is read-only")
    refused(lambda: fastopt.Adam([Producer(np.zeros(3), device=(2, 0))]), ValueError,
            r"params\[0\] lives on DLPack device \(2, 0\)")
    refused(lambda: fastopt.Adam([torch.zeros(3, 4).t()]), ValueError, r"params\[0\] must be C-contiguous")
    refused(lambda: fastopt.Adam([torch.nn.Parameter(torch.zeros(3))]), TypeError, r"params\[0\].*detach\(\)")
    opt = fastopt.Adam([np.zeros(3, np.float32)])
    refused(lambda: opt.step([torch.zeros(3, dtype=torch.float64)]), TypeError, r"grads\[0\] has dtype float64")
    refused(lambda: fastopt.nn.clip_grad_norm_([torch.zeros(3)[::2]], 1.0), ValueError, r"grads\[0\] must be C-cont")
