"""Schedule-free SGD and AdamW (Defazio et al., 2024), as the ``schedulefree`` package has them.

A schedule-free optimizer keeps two sequences and evaluates gradients at a
third: ``z`` (the base iterate, a state array), ``x`` (a running average of
``z`` with weights that grow with the learning rate) and ``y`` =
``lerp(z, x, beta)``, where the gradient is taken.  The parameters hold
``y`` while training and ``x`` for evaluation; ``x`` itself is never
stored, since ``x = lerp(y, z, 1 - 1/beta)``: :meth:`eval` and
:meth:`train` move the parameters between the two in one fused pass.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fastopt import _storage
from fastopt._kernels import lerp
from fastopt._threads import get_num_threads
from fastopt._validation import flag
from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from fastopt._typing import Array, Grads, Params, Scalar, StateDict
    from fastopt.optim._hyper import ParamGroup

_SCHEDULE_FREE_NOTES = """    The parameters hold :math:`y` while training: call :meth:`eval` before
    evaluating, checkpointing for deployment or recomputing batch-norm
    statistics (:func:`fastopt.optim.swa_utils.update_bn`, at the
    evaluation point, as the paper does), and :meth:`train` before the next
    step.  Unlike the ``schedulefree`` package, a new optimizer starts in
    training mode (``training`` is True), so code that never calls
    :meth:`train` steps as usual; a step in evaluation mode is refused.
    :func:`fastopt.fit` calls :meth:`train` before each epoch's batches and
    :meth:`eval` after them, so validation, ``restore_best`` and the model
    it returns see the evaluation point.  ``state_dict()`` and checkpoints
    keep the mode (a ``state_dict`` without ``"train_mode"`` loads as
    training mode), so a resumed run continues exactly as the unsaved run
    would.  The gradient is read, never changed (the package divides
    ``p.grad`` in place).

    State per slot: ``step``, ``weight_sum`` and ``lr_max`` (floats) and
    ``z`` (a copy of the parameters at the slot's first step){more}.  The
    package keeps the step count and the two sums per parameter group; here
    each slot keeps its own, which is the same while every slot steps every
    time, and differs for a slot given no gradient (``None``) on some steps
    or added later with ``add_param_group``.  ``z`` is the base iterate, the
    weights themselves, so ``state_dtype`` leaves it in float32 (float64
    with float64 parameters): with bfloat16 parameters, updates smaller than
    their resolution still accumulate there, and int8 or bfloat16 storage
    applies to the moment estimate only.
"""


class _ScheduleFree(Optimizer):
    """What SGDScheduleFree and AdamWScheduleFree share: the ``train()``/``eval()`` switch and ``z``'s start."""

    state_scalars = ("step", "weight_sum", "lr_max")
    full_precision_state = ("z",)  # the base iterate: the weights themselves, not a statistic

    def __init__(self, params: Params, defaults: Mapping[str, Any], **options: Any) -> None:
        super().__init__(params, defaults, **options)
        self._training = True

    @staticmethod
    def _beta(group: ParamGroup) -> float:
        """The interpolation coefficient between ``z`` and ``x`` (SGD's momentum, AdamW's beta1)."""
        raise NotImplementedError

    def _check_group(self, group: ParamGroup) -> None:
        self._checked_beta(group)

    def _checked_beta(self, group: ParamGroup) -> float:
        """The group's interpolation coefficient, refused outside (0, 1), where eval() cannot move to the average."""
        beta = self._beta(group)
        if not 0 < beta < 1:
            name = "momentum" if "momentum" in group else "betas[0]"
            raise ValueError(f"{type(self).__name__} needs {name} in (0, 1), got {beta!r}: eval() moves the "
                             "parameters to lerp(y, z, 1 - 1/beta)")
        return beta

    @property
    def training(self) -> bool:
        """True while the parameters hold the gradient point ``y``; False after :meth:`eval` (the average ``x``)."""
        return self._training

    def train(self) -> None:
        """Move the parameters to the point where gradients are taken, ``y = lerp(x, z, 1 - beta)``, if in eval mode."""
        with self._exclusive():
            if not self._training:
                self._switch(lambda beta: 1.0 - beta)
                self._training = True

    def eval(self) -> None:
        """Move the parameters to the averaged point ``x = lerp(y, z, 1 - 1/beta)``, if in training mode."""
        with self._exclusive():
            if self._training:
                self._switch(lambda beta: 1.0 - 1.0 / beta)
                self._training = False

    def averaged_point(self, index: int) -> Array:
        """A copy of slot ``index``'s evaluation point ``x`` (its parameters after :meth:`eval`, in ``z``'s
        dtype, before any rounding to bfloat16), moving nothing; the parameters where the slot has no ``z``."""
        with self._exclusive():
            state = self.state[index]
            point = np.array(self._full_precision_params(index), dtype=state["z"].dtype if "z" in state else None)
            if "z" in state and self._training:
                lerp(point, state["z"], 1.0 - 1.0 / self._checked_beta(self.param_groups[self._slot_group[index]]),
                     True, get_num_threads())
            return point

    def _switch(self, weight_of: Callable[[float], float]) -> None:
        """Every slot with a ``z``: parameters = lerp(parameters, z, weight_of(its group's beta)), in one pass.

        Every group's beta (one set in place after construction may be 0) and every array the passes read or
        write are checked before anything moves, so a refused switch changes nothing.
        """
        weights = [weight_of(self._checked_beta(group)) for group in self.param_groups]
        passes = []
        for index, slot in enumerate(self._layout.slots):
            state = self.state[index]
            if "z" not in state:  # never stepped: y = x = z
                continue
            layout = self.state_layout(index)
            keys = ("z", _storage.MASTER) if self.master_weights and _storage.MASTER in state else ("z",)
            for key in keys:
                array, (shape, dtype) = state[key], layout[key]
                if not (isinstance(array, np.ndarray) and array.shape == shape and array.dtype == dtype
                        and array.flags.c_contiguous and array.flags.writeable):
                    got = f"{array.dtype}{list(array.shape)}" if isinstance(array, np.ndarray) else type(array).__name__
                    raise ValueError(f"state {key!r} of {slot.name} must be a writeable contiguous "
                                     f"{dtype}{list(shape)} array, got {got}")
            passes.append((index, state["z"], weights[self._slot_group[index]]))
        threads = get_num_threads()
        for index, z, weight in passes:
            lerp(self._full_precision_params(index), z, weight, True, threads)
            self._round_master(index, threads)

    def _step_slots(self, grads: list[Array | None]) -> bool:
        if not self._training:  # checked under the step's locks: the mode cannot change before the update
            raise RuntimeError(f"{type(self).__name__} is in evaluation mode (its parameters hold the averaged "
                               "point); call train() before step()")
        return super()._step_slots(grads)

    def step(self, grads: Grads = None) -> bool:
        return super().step(grads)

    assert Optimizer.step.__doc__ is not None  # (it has one: the docstring the replace edits)
    step.__doc__ = Optimizer.step.__doc__.replace('''
        Returns
        -------''', '''
        Raises
        ------
        RuntimeError
            In evaluation mode (after :meth:`eval`, before :meth:`train`).

        Returns
        -------''')

    def _initial_value(self, name: str, group: ParamGroup, param: Array) -> float | Array:
        return param if name == "z" else 0.0

    def state_dict(self) -> StateDict:
        """:meth:`Optimizer.state_dict`, and ``"train_mode"``: :attr:`training`."""
        with self._exclusive():
            return {**super().state_dict(), "train_mode": self._training}

    def _load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        training = flag("state_dict['train_mode']", state_dict.get("train_mode", True))
        super()._load_state_dict(state_dict)
        self._training = training


class SGDScheduleFree(_ScheduleFree):
    r"""Schedule-free SGD (Defazio et al., 2024), as ``schedulefree.SGDScheduleFree``.

    .. math::

        \eta_t &= \eta \min(1, t / \text{warmup\_steps}), \qquad
            \eta_{\max} \leftarrow \max(\eta_{\max}, \eta_t), \qquad
            c_t = \frac{t^r \eta_{\max}^{p}}{\sum_{s \le t} s^r \eta_{\max,s}^{p}} \\
        d &= \pm g + \lambda y \\
        y &\leftarrow \operatorname{lerp}(y, z, c_t) + \eta_t (\beta (1 - c_t) - 1) d, \qquad
            z \leftarrow z - \eta_t d

    with :math:`\beta` the ``momentum`` and :math:`p` the
    ``weight_lr_power``; the evaluation point is
    :math:`x = \operatorname{lerp}(y, z, 1 - 1/\beta)`.  Use it without a
    learning-rate schedule (``warmup_steps`` is its warmup).

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 1.0
    momentum : float, default 0.9
        In (0, 1): the interpolation between ``z`` and ``x``.
    weight_decay : float, default 0
        Added to the gradient at ``y``, as the package does.
    warmup_steps : int, default 0
        Steps of linear learning-rate warmup.
    r : float, default 0
        Polynomial weighting of the average: step ``t`` weighs ``t ** r``.
    weight_lr_power : float, default 2
        Each step's weight in the average is ``lr_max ** weight_lr_power``.
    maximize : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    Notes
    -----
    """

    rule = "sgd_schedule_free"

    def __init__(self, params: Params, lr: Scalar = 1.0, momentum: Scalar = 0.9, weight_decay: Scalar = 0.0,
                 warmup_steps: int = 0, r: Scalar = 0.0, weight_lr_power: Scalar = 2.0, *, maximize: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, warmup_steps=warmup_steps,
                                      r=r, weight_lr_power=weight_lr_power, maximize=maximize), **options)

    @staticmethod
    def _beta(group: ParamGroup) -> float:
        return group["momentum"]  # type: ignore[no-any-return]


class AdamWScheduleFree(_ScheduleFree):
    r"""Schedule-free AdamW (Defazio et al., 2024), as ``schedulefree.AdamWScheduleFree``.

    With :math:`\eta_t` and :math:`c_t` as in :class:`SGDScheduleFree`:

    .. math::

        v &\leftarrow \beta_2 v + (1 - \beta_2) g^2, \qquad
            u = \frac{\pm g}{\sqrt{v / (1 - \beta_2^t)} + \epsilon} + \lambda y \\
        y &\leftarrow \operatorname{lerp}(y, z, c_t) + \eta_t (\beta_1 (1 - c_t) - 1) u, \qquad
            z \leftarrow z - \eta_t u

    and the evaluation point :math:`x = \operatorname{lerp}(y, z, 1 - 1/\beta_1)`.
    Use it without a learning-rate schedule (``warmup_steps`` is its warmup).

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 0.0025
    betas : (float, float), default (0.9, 0.999)
        ``betas[0]``, in (0, 1), interpolates between ``z`` and ``x``;
        ``betas[1]`` averages the squared gradients.
    eps : float, default 1e-8
    weight_decay : float, default 0
        Added to the normalized gradient at ``y``, as the package does.
    warmup_steps : int, default 0
    r : float, default 0
    weight_lr_power : float, default 2
        As for :class:`SGDScheduleFree`.
    maximize : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    Notes
    -----
    """

    rule = "adamw_schedule_free"

    def __init__(self, params: Params, lr: Scalar = 0.0025, betas: Sequence[Scalar] = (0.9, 0.999),
                 eps: Scalar = 1e-8, weight_decay: Scalar = 0.0, warmup_steps: int = 0, r: Scalar = 0.0,
                 weight_lr_power: Scalar = 2.0, *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power,
                                      maximize=maximize), **options)

    @staticmethod
    def _beta(group: ParamGroup) -> float:
        return group["betas"][0]  # type: ignore[no-any-return]


SGDScheduleFree.__doc__ += _SCHEDULE_FREE_NOTES.format(more="")  # type: ignore[operator]
AdamWScheduleFree.__doc__ += _SCHEDULE_FREE_NOTES.format(more=", ``exp_avg_sq``")  # type: ignore[operator]
