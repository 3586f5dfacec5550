"""LAMB, LARS, Adafactor, Prodigy and Muon (fastopt._rules.TENSOR_RULES): NumPy references, thread-count
invariance, the peers' trajectories (optax, torch, prodigyopt; skipped where not installed), per-tensor structure,
state and bad input."""
import math

import numpy as np
import pytest
from conftest import SIZES, THREADS

import fastopt
import reference
from trajectory import gradient, problem

# name -> (class, NumPy reference step, configurations)
RULES = {
    "LAMB": (fastopt.LAMB, reference.lamb, [dict(), dict(lr=0.01, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.1),
                                            dict(maximize=True, weight_decay=0.01)]),
    "LARS": (fastopt.LARS, reference.lars, [dict(), dict(lr=0.5, momentum=0.5, weight_decay=0.01, eps=1e-8,
                                                         nesterov=True), dict(momentum=0.0, maximize=True)]),
    "Adafactor": (fastopt.Adafactor, reference.adafactor, [dict(), dict(lr=0.05, beta2_decay=-0.5, eps=(1e-20, 1e-2),
                                                                        d=2.0, weight_decay=0.1),
                                                           dict(maximize=True, eps=(None, 0.0))]),
    "Prodigy": (fastopt.Prodigy, reference.prodigy, [dict(), dict(weight_decay=0.1, decouple=False, use_bias_correction=True,
                                                                  d0=1e-3), dict(betas=(0.0, 0.99), safeguard_warmup=True,
                                                                                 weight_decay=0.01, growth_rate=1.02,
                                                                                 maximize=True)]),
    "Muon": (fastopt.Muon, reference.muon, [dict(), dict(lr=0.02, nesterov=False, weight_decay=0.0, momentum=0.9,
                                                         adjust_lr_fn="match_rms_adamw", adamw_lr=0.01),
                                            dict(ns_steps=2, eps=1e-3, use_muon=False, adamw_weight_decay=0.1)]),
}
CLASSES = [cls for cls, _, _ in RULES.values()]
TOLERANCE = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}  # norms are summed in another order than NumPy's


def _shapes(n, name=None):
    """A slot's tensors for size ``n``: a vector of n, a matrix, a batch of matrices and a scalar."""
    matrix = {0: (0, 3), 1: (1, 1), 7: (7, 1)}.get(n, (1021, 13) if name == "Muon" else (1021, 1027))
    return {"v": (n,), "M": matrix, "B": (2, 3, 7), "s": ()}


def _reference_state(name, params, use_muon=True):
    if name == "LAMB":
        return [[np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]]
    if name == "LARS":
        return [[np.zeros_like(p) for p in params]]
    if name == "Prodigy":
        return [[reference.prodigy_state(p) for p in params], dict(d=1e-6, d_max=1e-6, d_numerator=0.0, k=0)]
    if name == "Muon":
        return [[reference.muon_state(p, use_muon) for p in params]]
    return [[reference.adafactor_state(p.shape, p.dtype) for p in params]]


def _reference_step(name, params, grads, state, step, config):
    ref = RULES[name][1]
    if name in ("LARS", "Prodigy"):
        if name == "Prodigy" and step == 1:  # the estimate starts at the configured d0
            state[1].update(d=config.get("d0", 1e-6), d_max=config.get("d0", 1e-6))
        return ref(params, grads, *state, **config)
    return ref(params, grads, *state, step, **config)


def _paramset(n, dtype, rng, name=None):
    return fastopt.ParamSet({k: rng.standard_normal(s) for k, s in _shapes(n, name).items()}, dtype=dtype)


@pytest.mark.parametrize("name, config", [(n, c) for n, (_, _, cs) in RULES.items() for c in cs],
                         ids=[f"{n}-{i}" for n, (_, _, cs) in RULES.items() for i in range(len(cs))])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", [1, 2])
def test_rule_matches_reference(name, config, dtype, n, threads, rng):
    """Three steps on a ParamSet of a vector, a matrix, a batch of matrices and a scalar: the NumPy reference."""
    ps = _paramset(n, dtype, rng, name)
    params = [ps[k].copy() for k in ps.names]
    state = _reference_state(name, params, config.get("use_muon", True))
    opt = RULES[name][0](ps, **config)
    with fastopt.threads(threads):
        for step in range(1, 4):
            grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
            for k, g in zip(ps.names, grads):
                ps.grads[k][...] = g
            opt.step()
            ratios = _reference_step(name, params, grads, state, step, config)
    for k, p in zip(ps.names, params):
        np.testing.assert_allclose(ps[k], p, rtol=TOLERANCE[np.dtype(dtype)], atol=TOLERANCE[np.dtype(dtype)], err_msg=k)
    if name == "Prodigy":
        assert opt.d == pytest.approx(state[1]["d"], rel=1e-4 if dtype == np.float32 else 1e-10)
        assert opt.state[0]["k"] == 3
    elif name in ("LAMB", "LARS"):
        assert opt.trust_ratios() == pytest.approx(dict(zip(ps.names, ratios)), rel=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("name", RULES)
def test_results_do_not_depend_on_thread_count(name, dtype, rng):
    cls, _, configs = RULES[name]
    start = _paramset(2**20 + 3, dtype, rng, name)
    grads = [rng.standard_normal(start.size).astype(dtype) for _ in range(3)]
    results = [_stepped(cls(ps := _copy(start, dtype), **configs[1]), ps, grads, threads) for threads in THREADS]
    for other in results[1:]:
        assert np.array_equal(results[0].view(np.uint8), other.view(np.uint8))


def _copy(ps, dtype):
    return fastopt.ParamSet({k: ps[k] for k in ps.names}, dtype=dtype)


def _stepped(opt, ps, grads, threads):
    """``ps.data`` after a step with each of ``grads`` on ``threads`` threads."""
    with fastopt.threads(threads):
        for g in grads:
            ps.grad[:] = g
            opt.step()
    return ps.data.copy()


def _peer_case(name, config):
    """300 float64 steps on the shared trajectory problem: ours, one array per tensor."""
    inits, scales, targets = problem()
    ours = [p.copy() for p in inits]
    opt = RULES[name][0](ours, **config)
    path = []
    for _ in range(300):
        opt.step([gradient(p, s, t) for p, s, t in zip(ours, scales, targets)])
        path.append([p.copy() for p in ours])
    return inits, scales, targets, path


def _torch_path(torch, theirs, peers, scales, targets):
    """300 steps of the torch optimizers ``peers`` over the tensors ``theirs``: their values after each."""
    path = []
    for _ in range(300):
        for p, s, t in zip(theirs, scales, targets):
            p.grad = torch.from_numpy(gradient(p.detach().numpy(), s, t))
        for peer in peers:
            peer.step()
        path.append([p.detach().numpy().copy() for p in theirs])
    return path


def _worst(path, peer_path):
    """The largest difference along the trajectories, relative to each tensor's largest value."""
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
               for step, peer_step in zip(path, peer_path) for a, b in zip(step, peer_step))


ADAFACTOR_PEER = [dict(), dict(lr=0.05, beta2_decay=-0.5, eps=(1e-20, 1e-2), d=1.5, weight_decay=0.1),
                  dict(maximize=False, eps=(None, 0.0), lr=0.002)]


@pytest.mark.parametrize("config", ADAFACTOR_PEER, ids=range(len(ADAFACTOR_PEER)))
def test_adafactor_matches_torch_over_300_steps(config):
    torch = pytest.importorskip("torch")
    inits, scales, targets, path = _peer_case("Adafactor", config)
    theirs = [torch.tensor(p, requires_grad=True) for p in inits]
    peer = torch.optim.Adafactor(theirs, foreach=False, **config)
    worst = _worst(path, _torch_path(torch, theirs, [peer], scales, targets))
    assert worst <= 1e-9, f"largest relative difference along the trajectory: {worst:.3g}"


OPTAX_PEER = [("LAMB", dict(lr=0.003)), ("LAMB", dict(lr=0.005, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.1)),
              ("LARS", dict(lr=0.5)), ("LARS", dict(lr=0.2, momentum=0.5, weight_decay=0.01, trust_coefficient=0.01,
                                                    eps=1e-6, nesterov=True))]


def _optax(name, config):
    optax = pytest.importorskip("optax")
    if name == "LAMB":
        (b1, b2) = config.get("betas", (0.9, 0.999))
        return optax.lamb(config["lr"], b1=b1, b2=b2, eps=config.get("eps", 1e-6),
                          weight_decay=config.get("weight_decay", 0.0))
    return optax.lars(config["lr"], weight_decay=config.get("weight_decay", 0.0),
                      trust_coefficient=config.get("trust_coefficient", 1e-3), eps=config.get("eps", 0.0),
                      momentum=config.get("momentum", 0.9), nesterov=config.get("nesterov", False))


@pytest.mark.parametrize("name, config", OPTAX_PEER, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTAX_PEER)])
def test_trust_ratio_rules_match_optax_over_300_steps(name, config):
    jax = pytest.importorskip("jax")
    transform = _optax(name, config)
    jax.config.update("jax_enable_x64", True)
    try:
        import jax.numpy as jnp
        import optax

        inits, scales, targets, path = _peer_case(name, config)
        theirs = [jnp.asarray(p) for p in inits]
        opt_state = transform.init(theirs)
        peer_path = []
        for _ in range(300):
            grads = [jnp.asarray(gradient(np.asarray(p), s, t)) for p, s, t in zip(theirs, scales, targets)]
            updates, opt_state = transform.update(grads, opt_state, theirs)
            theirs = optax.apply_updates(theirs, updates)
            peer_path.append([np.asarray(p) for p in theirs])
    finally:
        jax.config.update("jax_enable_x64", False)
    worst = _worst(path, peer_path)
    assert worst <= 1e-9, f"largest relative difference along the trajectory: {worst:.3g}"


def test_a_paramset_is_stepped_tensor_by_tensor(rng):
    """A ParamSet slot (aligned: padding between tensors) gives each named tensor what a list of its arrays gets."""
    shapes = {"W1": (9, 4), "b1": (4,), "W2": (2, 4, 3), "b2": ()}
    values = {k: rng.standard_normal(s) for k, s in shapes.items()}
    for cls in (fastopt.LAMB, fastopt.LARS, fastopt.Adafactor):  # (Prodigy's sums span everything)
        ps = fastopt.ParamSet(values, dtype=np.float32, align=True)
        arrays = [ps[k].copy() for k in ps.names]
        one, many = cls(ps), cls(arrays)
        for _ in range(3):
            grads = [rng.standard_normal(shapes[k]).astype(np.float32) for k in ps.names]
            for k, g in zip(ps.names, grads):
                ps.grads[k][...] = g
            one.step()
            many.step(grads)
        for k, a in zip(ps.names, arrays):
            np.testing.assert_array_equal(ps[k], a, err_msg=f"{cls.__name__} {k}")
        assert not ps.data[ps.slices["b1"].stop:ps.slices["W2"].start].any()  # the padding stays zero


def test_selected_groups_have_their_own_ratios_and_settings(rng):
    ps = fastopt.ParamSet({"W": rng.standard_normal((5, 3)), "b": rng.standard_normal(3)})
    ps.grad[:] = rng.standard_normal(ps.size)
    opt = fastopt.LAMB([{"params": ps.select("W"), "weight_decay": 0.1}, {"params": ps.select("b"), "lr": 0.0}])
    before = ps["b"].copy()
    opt.step()
    assert opt.trust_ratios(0).keys() == {"W"} and opt.trust_ratios(1).keys() == {"b"}
    np.testing.assert_array_equal(ps["b"], before)


def test_adafactor_state_is_factored(rng):
    ps = fastopt.ParamSet({"W": (6, 4), "B": (2, 3, 5), "b": (4,), "s": ()})
    ps.grad[:] = rng.standard_normal(ps.size)
    opt = fastopt.Adafactor(ps)
    opt.step()
    state = opt.state[0]
    assert state["row_var"].shape == (6 + 2 * 3,) and state["col_var"].shape == (4 + 2 * 5,)
    assert state["variance"].shape == (4 + 1,) and state["step"] == 1


@pytest.mark.parametrize("name", RULES)
def test_state_dict_and_checkpoint_resume_exactly(name, tmp_path, rng):
    cls, _, configs = RULES[name]
    ps = fastopt.ParamSet({"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}, dtype=np.float32)
    grads = [rng.standard_normal(ps.size).astype(np.float32) for _ in range(6)]
    opt = cls(ps, **configs[1])
    for g in grads[:3]:
        ps.grad[:] = g
        opt.step()
    fastopt.save(tmp_path / "ck", ps, opt)
    saved = opt.state_dict()
    for g in grads[3:]:
        ps.grad[:] = g
        opt.step()
    expected = ps.data.copy()
    for resume in ("state_dict", "checkpoint"):
        twin = fastopt.ParamSet({"W": (4, 3), "b": (3,)}, dtype=np.float32)
        again = cls(twin, **configs[1])
        if resume == "checkpoint":
            fastopt.load(tmp_path / "ck", twin, again)
        else:
            fastopt.load(tmp_path / "ck", twin)
            again.load_state_dict(saved)
        for g in grads[3:]:
            twin.grad[:] = g
            again.step()
        np.testing.assert_array_equal(twin.data, expected)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_refusals(cls):
    import ml_dtypes

    with pytest.raises(ValueError, match="float32 or float64 parameters"):
        cls(fastopt.ParamSet({"w": (3,)}, dtype=ml_dtypes.bfloat16))
    with pytest.raises(ValueError, match="state in the parameters' dtype"):
        cls([np.zeros(3, np.float32)], state_dtype="int8")
    with pytest.raises(ValueError, match="state in the parameters' dtype"):
        cls([np.zeros(3, np.float32)], state_dtype="float64")
    with pytest.raises(ValueError, match="learning rate"):
        cls([np.zeros(3)], lr=-1.0)


def test_adafactor_hyperparameters_are_torchs():
    with pytest.raises(ValueError, match="beta2_decay"):
        fastopt.Adafactor([np.zeros(3)], beta2_decay=0.5)
    with pytest.raises(ValueError, match=r"Invalid d value: 0.5 \(expected a value in \[1.0, inf\]\)"):
        fastopt.Adafactor([np.zeros(3)], d=0.5)
    assert fastopt.Adafactor([np.zeros(3)], d=float("inf")).defaults["d"] == float("inf")  # as torch: no clipping
    with pytest.raises(ValueError, match="Invalid d value"):
        fastopt.Adafactor([np.zeros(3)]).param_groups[0]["d"] = 0.0  # checked when changed, too
    with pytest.raises(TypeError, match=r"pair \(eps1, eps2\)"):
        fastopt.Adafactor([np.zeros(3)], eps=1e-3)
    with pytest.raises(ValueError, match=r"eps\[0\]"):
        fastopt.Adafactor([np.zeros(3)], eps=(-1.0, 1e-3))
    opt = fastopt.Adafactor([np.zeros(3)])
    assert opt.defaults["eps"] == (None, 1e-3) and opt.defaults["beta2_decay"] == -0.8


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_a_replaced_state_array_is_refused_before_any_slot_moves(cls, rng):
    arrays = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    opt = cls(arrays)
    grads = [rng.standard_normal(a.shape) for a in arrays]
    opt.step(grads)
    before = [a.copy() for a in arrays]
    name = cls.state_arrays[0] if cls is not fastopt.Adafactor else "variance"
    opt.state[1][name] = np.zeros(99)
    with pytest.raises(ValueError, match=f"state '{name}' of params\\[1\\]"):
        opt.step(grads)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)
    assert opt.state[0]["step"] == 1


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_skip_nonfinite_and_nonfinite_propagation(cls):
    w = np.ones(4)
    opt = cls([w], skip_nonfinite=True)
    assert opt.step([np.array([1.0, np.nan, 0.0, 1.0])]) is False
    np.testing.assert_array_equal(w, 1.0)
    assert opt.skipped_steps == 1 and not opt.state[0]
    loose = cls([w])
    loose.step([np.array([1.0, np.nan, 0.0, 1.0])])
    assert np.isnan(w).any()  # a NaN reaches the norms, and through them the whole tensor (documented)


PRODIGY_PEER = [dict(), dict(weight_decay=0.1, decouple=False, use_bias_correction=True),
                dict(betas=(0.0, 0.99), safeguard_warmup=True, weight_decay=0.01, growth_rate=1.02),
                dict(d0=1e-4, d_coef=0.5, beta3=0.95, eps=1e-6)]


@pytest.mark.parametrize("config", PRODIGY_PEER, ids=range(len(PRODIGY_PEER)))
def test_prodigy_matches_prodigyopt_over_300_steps(config):
    torch = pytest.importorskip("torch")
    prodigyopt = pytest.importorskip("prodigyopt")
    inits, scales, targets, path = _peer_case("Prodigy", config)
    theirs = [torch.tensor(p, requires_grad=True) for p in inits]
    peer = prodigyopt.Prodigy(theirs, **config)
    worst = _worst(path, _torch_path(torch, theirs, [peer], scales, targets))
    assert worst <= 1e-9, f"largest relative difference along the trajectory: {worst:.3g}"


def test_prodigy_estimate_spans_every_group_and_is_saved(rng, tmp_path):
    """One D for all groups (a group at lr 0 stays out of it); groups that disagree on the shared settings are
    refused before anything moves; the estimate survives a checkpoint."""
    ps = fastopt.ParamSet({"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)})
    direction = rng.standard_normal(ps.size)  # consistent gradients: the estimate grows
    grads = [direction + 0.1 * rng.standard_normal(ps.size) for _ in range(4)]
    opt = fastopt.Prodigy([{"params": ps.select("W")}, {"params": ps.select("b"), "weight_decay": 0.1}])
    for g in grads[:2]:  # the first step leaves d at d0 (p0 is p)
        ps.grad[:] = g
        opt.step()
    assert opt.state[0]["d"] == opt.state[1]["d"] == opt.d > 1e-6
    fastopt.save(tmp_path / "ck", ps, opt)
    for g in grads[2:]:
        ps.grad[:] = g
        opt.step()
    twin = fastopt.ParamSet({"W": (4, 3), "b": (3,)})
    again = fastopt.Prodigy([{"params": twin.select("W")}, {"params": twin.select("b"), "weight_decay": 0.1}])
    fastopt.load(tmp_path / "ck", twin, again)
    for g in grads[2:]:
        twin.grad[:] = g
        again.step()
    np.testing.assert_array_equal(twin.data, ps.data)
    assert again.d == opt.d
    opt.param_groups[1]["betas"] = (0.5, 0.9)
    before = ps.data.copy()
    with pytest.raises(ValueError, match="belong to the whole optimizer"):
        opt.step()
    opt.param_groups[1]["betas"] = (0.9, 0.999)
    opt.param_groups[1]["lr"] = 0.5
    with pytest.raises(ValueError, match="only to the largest"):
        opt.step()
    np.testing.assert_array_equal(ps.data, before)
    opt.param_groups[1]["lr"] = 0.0
    opt.step()
    assert opt.state[1]["step"] == 5


def test_prodigy_zero_gradients_move_nothing_but_the_moments():
    w = np.ones(3)
    opt = fastopt.Prodigy([w])
    opt.step([np.zeros(3)])
    np.testing.assert_array_equal(w, 1.0)
    assert opt.state[0]["step"] == 0 and opt.state[0]["k"] == 0 and opt.d == 1e-6
    opt.load_state_dict(opt.state_dict())  # the state is complete


MUON_PEER = [dict(lr=0.01), dict(lr=0.005, nesterov=False, weight_decay=0.0, momentum=0.9),
             dict(lr=0.005, adjust_lr_fn="match_rms_adamw", ns_steps=3, eps=1e-5)]


def _torch_muon(torch, config, inits, adamw_lr):
    """torch.optim.Muon on the matrix, torch.optim.AdamW (the reference's auxiliary Adam) on the vector."""
    theirs = [torch.tensor(p, requires_grad=True) for p in inits]
    muon = torch.optim.Muon([theirs[0]], **config)
    adamw = torch.optim.AdamW([theirs[1]], lr=adamw_lr, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.0, foreach=False)
    return theirs, (muon, adamw)


@pytest.mark.parametrize("config", MUON_PEER, ids=range(len(MUON_PEER)))
def test_muon_matches_torch_over_300_steps(config, monkeypatch):
    """torch's Newton-Schulz iteration runs in bfloat16: with its precision raised to the parameters' own (float64),
    300 steps of the matrix (Muon) and the vector (AdamW) agree to 1e-9."""
    torch = pytest.importorskip("torch")
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("this torch has no torch.optim.Muon")
    inits, scales, targets, path = _peer_case("Muon", dict(config, adamw_lr=0.01))
    theirs, peers = _torch_muon(torch, config, inits, 0.01)
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self: self.clone())
    worst = _worst(path, _torch_path(torch, theirs, peers, scales, targets))
    assert worst <= 1e-9, f"largest relative difference along the trajectory: {worst:.3g}"


def test_muon_agrees_with_torchs_bfloat16_iteration_to_its_rounding(rng):
    torch = pytest.importorskip("torch")
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("this torch has no torch.optim.Muon")
    w = rng.standard_normal((40, 24)).astype(np.float32)
    g = rng.standard_normal((40, 24)).astype(np.float32)
    ours = w.copy()
    fastopt.Muon([ours], lr=0.1).step([g])
    theirs = torch.tensor(w, requires_grad=True)
    theirs.grad = torch.from_numpy(g)
    torch.optim.Muon([theirs], lr=0.1).step()
    step, peer_step = ours - w * (1 - 0.1 * 0.1), theirs.detach().numpy() - w * (1 - 0.1 * 0.1)
    assert np.max(np.abs(step - peer_step)) <= 0.05 * np.max(np.abs(peer_step))


def test_muon_takes_adamw_for_vectors_and_groups_without_muon(rng):
    ps = fastopt.ParamSet({"emb": rng.standard_normal((6, 4)), "W": rng.standard_normal((4, 3)),
                           "b": rng.standard_normal(3), "conv": rng.standard_normal((2, 3, 2))})
    opt = fastopt.Muon([{"params": ps.select(["emb"]), "use_muon": False},
                        {"params": ps.select(["W", "b", "conv"])}])
    ps.grad[:] = rng.standard_normal(ps.size)
    opt.step()
    assert opt.state[0]["momentum_buffer"].size == 0 and opt.state[0]["exp_avg"].size == 24
    assert opt.state[1]["momentum_buffer"].size == 12 + 12 and opt.state[1]["exp_avg"].size == 3
    with pytest.raises(ValueError, match="use_muon .* is fixed"):
        opt.param_groups[0]["use_muon"] = True
        opt.step()


def test_a_schedule_and_fit_drive_them(rng):
    x = rng.standard_normal((64, 3))
    y = x @ np.array([1.0, -2.0, 0.5])
    for cls, config in ((fastopt.LAMB, dict(lr=0.05)), (fastopt.LARS, dict(lr=5.0)),
                        (fastopt.Adafactor, dict(lr=0.1)), (fastopt.Prodigy, dict(lr=1.0)),
                        (fastopt.Muon, dict(lr=0.01, adamw_lr=0.1))):
        ps = fastopt.ParamSet({"w": rng.standard_normal(3)})
        opt = cls(ps, **config)
        sched = fastopt.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5)

        def loss(batch):
            xb, yb = batch
            r = xb @ ps["w"] - yb
            ps.grads["w"][...] = xb.T @ r / len(yb)
            return 0.5 * float(r @ r) / len(yb)

        first = loss((x, y))
        for _ in range(200):
            loss((x, y))
            opt.step()
            sched.step()
        assert opt.param_groups[0]["lr"] == config["lr"] * 0.5**4
        assert loss((x, y)) < 0.1 * first, cls.__name__


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_sharded_optimizer_refuses_them(cls):
    pytest.importorskip("mpi4py")  # fastopt.distributed needs it
    from fastopt.distributed.sharded import _check_arguments

    with pytest.raises(ValueError, match="numbers of whole tensors"):
        _check_arguments(cls, fastopt.ParamSet({"w": 2}))


@pytest.mark.parametrize("name", RULES)
def test_instruction_set_builds_agree_bit_for_bit(name, dtype, rng, monkeypatch):
    """The baseline, AVX2 and AVX-512 builds of fastopt._tensorwise (whichever this CPU runs) give the same bits,
    with 1 and 3 threads."""
    from fastopt import _kernels
    from fastopt.optim import _tensor_rules, adafactor, prodigy, trust_ratio

    builds = _kernels.available()
    if len(builds) < 2:
        pytest.skip("only the baseline build of the kernels exists here")
    cls, _, configs = RULES[name]
    start = _paramset(3 * 2**16 + 5, dtype, rng, name)
    grads = [rng.standard_normal(start.size).astype(dtype) for _ in range(3)]
    outputs = []
    for build in builds:
        for module in (_tensor_rules, adafactor, prodigy, trust_ratio):  # each bound the build at import
            monkeypatch.setattr(module, "tensorwise", _kernels.load(build, "fastopt._tensorwise"))
        for threads in (1, 3):
            ps = _copy(start, dtype)
            outputs.append(_stepped(cls(ps, **configs[1]), ps, grads, threads))
    for other in outputs[1:]:
        assert np.array_equal(outputs[0].view(np.uint8), other.view(np.uint8))


FIT_CASES = [(fastopt.LAMB, dict(lr=0.01)), (fastopt.LARS, dict(lr=5.0)), (fastopt.Adafactor, dict(lr=0.01)),
             (fastopt.Prodigy, dict()), (fastopt.Muon, dict(lr=0.02, adamw_lr=3e-3))]


@pytest.mark.parametrize("cls, config", FIT_CASES, ids=[cls.__name__ for cls, _ in FIT_CASES])
def test_fit_with_a_scheduler_and_clipping_trains_the_demo_mlp(cls, config):
    from fastopt.demo import MLP

    X, y = fastopt.datasets.load_digits(dtype=np.float32)
    X = X / 16
    mlp = MLP(64, 32, 10, seed=0)
    opt = cls(mlp.params, **config)
    sched = fastopt.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3)
    history = fastopt.fit(mlp, opt, X, y, epochs=3, batch_size=64, scheduler=sched, clip_grad_norm=5.0,
                          progress=False)
    assert history.train_loss[-1] < history.train_loss[0] and mlp.accuracy(X, y) > 0.8


def test_the_kernels_refuse_what_would_take_them_out_of_bounds():
    from fastopt._kernels import tensorwise as T

    n = 1 << 12
    p, g, m, v, s, p0 = (np.ones(n, np.float32) for _ in range(6))
    cuts = T.pieces([(0, n)], 4)
    with pytest.raises(ValueError, match="names no tensor"):
        T.lamb_step(p, g, m, v, np.array([[0, n, 10**9]], np.intp), np.ones(1), 1e-3, .9, .999, 1e-6, 0., False, 1)
    with pytest.raises(ValueError, match="names no tensor"):
        T.lamb_step(p, g, m, v, cuts, np.ones(0), 1e-3, .9, .999, 1e-6, 0., False, 1)
    with pytest.raises(ValueError, match="overlaps"):
        T.lars_step(p, g, m, np.array([[0, 8, 0], [4, 12, 0]], np.intp), np.ones(1), 1., .9, 0., 1e-3, 0., False,
                    False, 1)
    for bad in (p.astype(np.float16), p.astype(np.int32), p.astype(">f4")):
        with pytest.raises(ValueError, match="float32 or float64"):
            T.lamb_step(bad, g, m, v, cuts, np.ones(1), 1e-3, .9, .999, 1e-6, 0., False, 1)
        with pytest.raises(ValueError, match="float32 or float64"):
            T.adafactor_step(bad, g, m[:0], m[:0], v, np.array([[0, 1, 0, n, 0, 0, 0]], np.intp), 1e-2, -0.8,
                             1e-30, 1e-3, 1.0, 0.0, False, 1)
    with pytest.raises(ValueError, match="Prodigy's state"):
        T.prodigy_pass(p, g, (m, v), cuts, (1.0,) * 12, True, False, 1)
    with pytest.raises(ValueError, match="itemsize"):
        T.pieces([(0, n)], 0)
    with pytest.raises(ValueError, match="outside its arrays"):
        T.adafactor_step(p, g, m[:0], m[:0], v, np.array([[0, 1, 0, 2 * n, 0, 0, 0]], np.intp), 1e-2, -0.8, 1e-30,
                         1e-3, 1.0, 0.0, False, 1)


def test_a_loaded_state_dict_cannot_change_use_muon():
    plain = fastopt.Muon([np.ones((3, 2))], use_muon=False)
    plain.step([np.ones((3, 2))])
    other = fastopt.Muon([np.ones((3, 2))])
    with pytest.raises(ValueError, match="use_muon"):
        other.load_state_dict(plain.state_dict())
    assert other.param_groups[0]["use_muon"] is True and not other.state[0]


def test_an_empty_neighbour_of_a_selection_is_not_its_tensor():
    ps = fastopt.ParamSet({"a": (2,), "e": (0,), "c": (3,), "d": (2,)})
    ps.grad[:] = 1.0
    opt = fastopt.LAMB([{"params": ps.select(["a"])}, {"params": ps.select(["c", "d"])}])
    opt.step()
    assert opt.trust_ratios(0).keys() == {"a"} and opt.trust_ratios(1).keys() == {"c", "d"}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_the_wrappers_take_them_and_resume_exactly(cls, rng):
    """Lookahead and Accumulate around each rule: a state_dict taken mid-window resumes with the same bits."""
    shapes = {"W": (4, 3), "b": (3,)}
    start = {k: rng.standard_normal(s) for k, s in shapes.items()}
    grads = [rng.standard_normal(sum(int(np.prod(s)) for s in shapes.values())) for _ in range(7)]
    for wrap in (lambda opt: fastopt.Lookahead(opt, k=3, alpha=0.5), lambda opt: fastopt.Accumulate(opt, every=2)):
        ps = fastopt.ParamSet(start)
        opt = wrap(cls(ps))
        for g in grads[:4]:
            ps.grad[:] = g
            opt.step()
        saved, at = opt.state_dict(), ps.data.copy()
        for g in grads[4:]:
            ps.grad[:] = g
            opt.step()
        twin = fastopt.ParamSet(start)
        twin.data[:] = at
        again = wrap(cls(twin))
        again.load_state_dict(saved)
        for g in grads[4:]:
            twin.grad[:] = g
            again.step()
        np.testing.assert_array_equal(twin.data, ps.data)
