"""The optimizer classes against the rule tables: each rule of fastopt._rules.RULES (and TENSOR_RULES) is one
optimizer's contract."""
import inspect

import numpy as np
import pytest

import fastopt
from fastopt import _kernels
from fastopt._rules import RULES, TENSOR_RULES
from fastopt.optim import optimizer as optimizer_module
from fastopt._validation import (adjust_lr, any_real, at_least_one, beta_triple, betas, eps_pair, flag, growth, nonnegative,
                                 nonpositive, ns_steps, optional_beta, positive, real_triple, unit_interval,
                                 warmup_steps)
from fastopt.optim.optimizer import CHECKS, Optimizer, validators_of


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


# fastopt's own optimizers (a test elsewhere may define a subclass of its own; a base class without a rule,
# such as the schedule-free rules' shared one, is no optimizer)
CLASSES = [cls for cls in _subclasses(Optimizer) if cls.__module__.startswith("fastopt.optim.") and cls.rule]
# The classes that name a rule themselves; a subclass (AdamW) inherits its parent's.
DECLARING = {cls for cls in CLASSES if "rule" in cls.__dict__}
# Hyperparameters a subclass fixes instead of taking (AdamW is Adam with decoupled_weight_decay=True).
FIXED = {fastopt.AdamW: {"decoupled_weight_decay"}}
# Both tables: the element-wise rules and those that need numbers of whole tensors.
TABLE = {**RULES, **TENSOR_RULES}


def _python_names(rule):
    """The Python optimizer's hyperparameters of ``rule``: ``betas`` for beta1, beta2 (, beta3), in the table's order."""
    names = []
    for hyper in rule.hyper:
        name = "betas" if hyper.check == "beta" else hyper.name
        if name not in names:
            names.append(name)
    return names


def test_every_optimizer_is_exported_and_names_a_rule():
    assert {cls.__name__ for cls in CLASSES} <= set(fastopt.optim.__all__)
    for cls in CLASSES:
        assert cls.rule in TABLE, cls


def test_the_tables_share_no_name():
    assert not set(RULES) & set(TENSOR_RULES)


@pytest.mark.parametrize("rule", TABLE)
def test_every_rule_has_exactly_one_optimizer(rule):
    users = [cls for cls in DECLARING if cls.rule == rule]
    assert len(users) == 1, f"rule {rule!r} is declared by {users}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_validators_and_state_arrays_are_the_tables(cls):
    rule = TABLE[cls.rule]
    assert list(cls.validators) == _python_names(rule)
    three = any(h.name == "beta3" and h.check == "beta" for h in rule.hyper)
    expected = {"nonnegative": nonnegative, "real": any_real, "unit": unit_interval,
                "beta": beta_triple if three else betas, "flag": flag, "steps": warmup_steps,
                "nonpositive": nonpositive, "eps_pair": eps_pair, "positive": positive, "growth": growth,
                "optional_beta": optional_beta, "beta_pair": betas, "real_triple": real_triple, "ns_steps": ns_steps,
                "adjust_lr": adjust_lr, "at_least_one": at_least_one}
    for hyper in rule.hyper:
        name = "betas" if hyper.check == "beta" else hyper.name
        assert cls.validators[name] is expected[hyper.check], (cls, hyper)
    assert cls.state_arrays == rule.state_names
    assert cls.switchable_state == rule.switchable
    assert not hasattr(cls, "rules")  # one name for the validators (``rule`` is the rule's)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_init_takes_every_hyperparameter_of_the_table(cls):
    parameters = inspect.signature(cls.__init__).parameters
    fixed = FIXED.get(cls, set())
    for name in _python_names(TABLE[cls.rule]):
        if name not in fixed:
            assert name in parameters, f"{cls.__name__}() does not take {name}"
            assert parameters[name].default is not inspect.Parameter.empty, f"{cls.__name__}({name}) has no default"
    # ... and passes every one of them on: its defaults are the table's hyperparameters, no more, no fewer
    assert set(cls([np.zeros(3)]).defaults) == set(cls.validators)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_needed_is_the_tables(cls):
    opt = cls([np.zeros(3)])
    group = opt.param_groups[0]
    if cls.rule in TENSOR_RULES:  # every state array, always
        assert opt._needed(group) == (True,) * len(cls.state_arrays)
    else:
        assert opt._needed(group) == _kernels.needed(cls.rule, group.kernel_hyper())
    assert len(opt._needed(group)) == len(cls.state_arrays)


def test_checks_map_every_check_of_the_table():
    assert {hyper.check for rule in TABLE.values() for hyper in rule.hyper} <= set(CHECKS)
    assert optimizer_module.CHECKS is CHECKS


def test_a_subclass_cannot_restate_what_the_table_says():
    for attribute in ("validators", "rules", "state_arrays", "switchable_state"):
        with pytest.raises(TypeError, match="come from fastopt._rules.RULES"):
            type("Restated", (Optimizer,), {"rule": "adam", attribute: ()})
    with pytest.raises(ValueError, match="not a rule of fastopt._rules.RULES"):
        type("Unknown", (Optimizer,), {"rule": "adamz"})


def test_validators_of_refuses_a_lone_beta():
    rule = RULES["adam"]
    lone = type(rule)(**{**{f: getattr(rule, f) for f in rule.__dataclass_fields__},
                         "hyper": tuple(h for h in rule.hyper if h.name != "beta2")})
    with pytest.raises(TypeError, match=r"beta1, beta2 \(and beta3\) together"):
        validators_of(lone)


def test_validators_are_read_only():
    with pytest.raises(TypeError):
        fastopt.Adam.validators["lr"] = flag
