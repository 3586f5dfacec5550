"""BoundStep's checks for the storage types of issue 14, and nonfinite_count on bfloat16 arrays.

BoundStep binds raw pointers once; these checks are all that keeps a stored
kernel in bounds, so each wrong combination must be refused at binding, with
a message that names the array and says what was expected.
"""
import subprocess
import sys

import numpy as np
import pytest

from fastopt import _kernels
from fastopt._kernels import BoundStep, nonfinite_count
from fastopt._storage import BFLOAT16, BLOCK, absmax_length

ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
            decoupled_weight_decay=False)
N = 300  # two int8 blocks, the second short


def arr(dtype, n=N):
    return np.zeros(n, dtype)


def pair(n=N, blocks=None):
    """An int8 state: uint8 codes and float32 absmax, ceil(n / 256) of them unless told otherwise."""
    return np.zeros(n, np.uint8), np.zeros(absmax_length(n) if blocks is None else blocks, np.float32)


def bind(param, grad, exp_avg, exp_avg_sq, **kwargs):
    return BoundStep("adam", param, grad, (exp_avg, exp_avg_sq, None), ADAM, **kwargs)


def refused(match, *args, **kwargs):
    with pytest.raises(ValueError, match=match):
        bind(*args, **kwargs)


# --------------------------------------------------------------------------
# What is accepted
# --------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 1])
@pytest.mark.parametrize("param_dtype", [np.float32, BFLOAT16])
def test_int8_pairs_of_the_right_lengths_bind_and_run(n, param_dtype):
    step = bind(arr(param_dtype, n), arr(param_dtype, n), pair(n), pair(n))
    assert step.stored
    step.run(1)


@pytest.mark.parametrize("rounding", ["nearest", "master", "stochastic"])
@pytest.mark.parametrize("state_dtype", [np.float32, BFLOAT16, np.uint16])
def test_bfloat16_parameters_bind_with_float32_or_bfloat16_state(state_dtype, rounding):
    options = {"nearest": {}, "master": dict(master=arr(np.float32)),
               "stochastic": dict(stochastic_rounding=True, seed=2**64 - 1, stream=2**64 - 1)}[rounding]
    step = bind(arr(BFLOAT16), arr(BFLOAT16), arr(state_dtype), arr(state_dtype), **options)
    assert step.stored
    step.run(3)


def test_float32_parameters_with_float32_state_use_the_plain_kernel():
    assert not bind(arr(np.float32), arr(np.float32), arr(np.float32), arr(np.float32)).stored
    assert bind(arr(np.float32), arr(np.float32), arr(BFLOAT16), arr(np.float32)).stored


# --------------------------------------------------------------------------
# int8 pairs
# --------------------------------------------------------------------------
@pytest.mark.parametrize("n, blocks", [(N, 1), (N, 3), (BLOCK, 2), (BLOCK + 1, 1), (1, 0), (0, 1)])
def test_int8_absmax_must_have_one_entry_per_block(n, blocks):
    expected = -(-n // BLOCK)
    refused(rf"exp_avg_absmax has {blocks} elements, {expected} expected",
            arr(np.float32, n), arr(np.float32, n), pair(n, blocks), pair(n))
    refused(rf"exp_avg_sq_absmax has {blocks} elements, {expected} expected",
            arr(BFLOAT16, n), arr(BFLOAT16, n), pair(n), pair(n, blocks))


def test_int8_codes_must_have_one_per_element():
    codes, absmax = pair()
    refused(r"exp_avg has 299 elements, 300 expected", arr(np.float32), arr(np.float32), (codes[:-1], absmax),
            arr(np.float32))


@pytest.mark.parametrize("items", [1, 3])
def test_an_int8_state_is_a_pair(items):
    codes, absmax = pair()
    refused(rf"exp_avg in int8 storage is a pair \(codes, absmax\), got {items} items", arr(np.float32),
            arr(np.float32), (codes, absmax, absmax)[:items], arr(np.float32))


@pytest.mark.parametrize("param_dtype", [np.float32, BFLOAT16])
def test_a_uint8_array_without_its_absmax_is_refused(param_dtype):
    refused(r"exp_avg_sq must be .*got uint8 \(int8 state is a \(codes, absmax\) pair", arr(param_dtype), arr(param_dtype),
            pair(), arr(np.uint8))


def test_int8_pair_members_have_their_own_dtypes():
    codes, absmax = pair()
    refused(r"exp_avg must be a writeable 1-D contiguous uint8 array, got int8\[300\]", arr(np.float32),
            arr(np.float32), (codes.view(np.int8), absmax), arr(np.float32))
    refused(r"exp_avg_absmax must be a writeable 1-D contiguous float32 array, got float64\[2\]", arr(np.float32),
            arr(np.float32), (codes, absmax.astype(np.float64)), arr(np.float32))
    absmax.flags.writeable = False
    refused(r"exp_avg_absmax must be a writeable .* got read-only float32\[2\]", arr(np.float32), arr(np.float32),
            (codes, absmax), arr(np.float32))


# --------------------------------------------------------------------------
# float64 parameters keep float64 state
# --------------------------------------------------------------------------
def test_float64_parameters_refuse_int8_state():
    refused(r"float64 parameters keep float64 state \(bfloat16 and int8 storage are for float32 and bfloat16",
            arr(np.float64), arr(np.float64), pair(), arr(np.float64))


@pytest.mark.parametrize("state_dtype", [BFLOAT16, np.uint16, np.float32])
def test_float64_parameters_refuse_narrower_state(state_dtype):
    name = "bfloat16" if state_dtype in (BFLOAT16, np.uint16) else "float32"
    refused(rf"exp_avg_sq is {'uint16' if state_dtype is np.uint16 else name}, which does not go with float64 "
            r"parameters \(float64 parameters keep float64 state",
            arr(np.float64), arr(np.float64), arr(np.float64), arr(state_dtype))


@pytest.mark.parametrize("param_dtype", [np.float32, BFLOAT16])
def test_float64_state_needs_float64_parameters(param_dtype):
    refused(r"exp_avg is float64, which does not go with", arr(param_dtype), arr(param_dtype), arr(np.float64),
            arr(np.float32))


# --------------------------------------------------------------------------
# Master copies and stochastic rounding are for bfloat16 parameters
# --------------------------------------------------------------------------
@pytest.mark.parametrize("param_dtype, name", [(np.float32, "float32"), (np.float64, "float64")])
def test_a_master_copy_needs_bfloat16_parameters(param_dtype, name):
    refused(rf"a master copy is for bfloat16 parameters, not {name}", arr(param_dtype), arr(param_dtype),
            arr(param_dtype), arr(param_dtype), master=arr(np.float32))


@pytest.mark.parametrize("param_dtype, name", [(np.float32, "float32"), (np.float64, "float64")])
def test_stochastic_rounding_needs_bfloat16_parameters(param_dtype, name):
    refused(rf"stochastic rounding is for bfloat16 parameters, not {name}", arr(param_dtype), arr(param_dtype),
            arr(param_dtype), arr(param_dtype), stochastic_rounding=True)


def test_a_master_copy_excludes_stochastic_rounding():
    refused(r"bfloat16 parameters with a master copy are rounded to nearest: stochastic_rounding needs "
            r"master=None", arr(BFLOAT16), arr(BFLOAT16), arr(np.float32), arr(np.float32), master=arr(np.float32),
            stochastic_rounding=True)


@pytest.mark.parametrize("master, match", [
    (arr(BFLOAT16), r"master must be a writeable 1-D contiguous float32 array, got bfloat16\[300\]"),
    (arr(np.float64), r"master must be a writeable 1-D contiguous float32 array, got float64\[300\]"),
    (arr(np.float32, N - 1), r"master has 299 elements, 300 expected"),
    (np.zeros((N, 1), np.float32), r"master must be a writeable 1-D contiguous float32 array, got float32\[300, 1\]"),
])
def test_a_master_copy_is_float32_of_the_parameters_length(master, match):
    refused(match, arr(BFLOAT16), arr(BFLOAT16), arr(np.float32), arr(np.float32), master=master)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seeds_are_64_bit_unsigned(seed):
    with pytest.raises(OverflowError):
        bind(arr(BFLOAT16), arr(BFLOAT16), arr(np.float32), arr(np.float32), stochastic_rounding=True, seed=seed)


# --------------------------------------------------------------------------
# Gradients have their parameters' dtype
# --------------------------------------------------------------------------
@pytest.mark.parametrize("param_dtype, grad_dtype, expected, got", [
    (np.float32, np.float64, "float32", "float64"),
    (np.float32, BFLOAT16, "float32", "bfloat16"),
    (np.float32, np.float16, "float32", "float16"),
    (np.float32, np.uint8, "float32", "uint8"),
    (BFLOAT16, np.float32, "bfloat16", "float32"),
    (BFLOAT16, np.float64, "bfloat16", "float64"),
    (BFLOAT16, np.int16, "bfloat16", "int16"),
    (np.float64, np.float32, "float64", "float32"),
    (np.float64, BFLOAT16, "float64", "bfloat16"),
])
def test_a_gradient_of_another_dtype_is_refused(param_dtype, grad_dtype, expected, got):
    state = arr(np.float64 if param_dtype is np.float64 else np.float32)
    refused(rf"grad must be a 1-D contiguous {expected} array, got {got}\[300\]", arr(param_dtype),
            arr(grad_dtype), state, state.copy())


def test_a_gradient_may_be_bfloat16_bits():
    bind(arr(BFLOAT16), arr(np.uint16), arr(np.float32), arr(np.float32)).run(1)


def test_set_grad_checks_the_dtype_too():
    step = bind(arr(BFLOAT16), arr(BFLOAT16), pair(), pair())
    with pytest.raises(ValueError, match=r"grad must be a 1-D contiguous bfloat16 array, got float32\[300\]"):
        step.set_grad(arr(np.float32))


def test_uint8_parameters_are_refused():
    refused(r"param must be a float32, float64 or bfloat16 array", arr(np.uint8), arr(np.uint8), arr(np.float32),
            arr(np.float32))


# --------------------------------------------------------------------------
# nonfinite_count on bfloat16 arrays
# --------------------------------------------------------------------------
BAD_BITS = [0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0xFFFF]  # +-inf, quiet NaNs of either sign, other NaNs
GOOD_BITS = [0x7F7F, 0xFF7F, 0x0001, 0x8001, 0x0000, 0x8000, 0x3F80]  # +-max finite, +-subnormal, +-0, 1


@pytest.mark.parametrize("view", ["bfloat16", "uint16"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [0, 1, 7, 2**20 + 3])
def test_nonfinite_count_on_bfloat16(n, threads, view):
    rng = np.random.default_rng(n)
    bits = rng.choice(np.array(GOOD_BITS, np.uint16), n)
    if n:
        where = np.unique(np.r_[0, n - 1, rng.integers(0, n, size=min(n, 1000))])
        bits[where] = rng.choice(np.array(BAD_BITS, np.uint16), where.size)
    x = bits if view == "uint16" else bits.view(BFLOAT16)
    expected = int(np.count_nonzero(~np.isfinite(bits.view(BFLOAT16).astype(np.float32))))
    assert expected == (0 if n == 0 else where.size)
    assert nonfinite_count(x, threads) == expected
    bits[:] = 0x3F80  # all finite
    assert nonfinite_count(x, threads) == 0


def test_nonfinite_count_takes_every_bfloat16_pattern():
    bits = np.arange(2**16, dtype=np.uint16)
    expected = int(np.count_nonzero(~np.isfinite(bits.view(BFLOAT16).astype(np.float32))))
    assert expected == 2 * 128  # exponent all ones: 2 signs x 128 mantissas (inf and the NaNs)
    for threads in (1, 2):
        assert nonfinite_count(bits.view(BFLOAT16), threads) == expected
        assert nonfinite_count(bits, threads) == expected


def test_nonfinite_count_refuses_strided_and_2d_bfloat16():
    with pytest.raises(ValueError, match=r"x must be a 1-D contiguous bfloat16 array, got bfloat16\[4\]"):
        nonfinite_count(np.zeros(8, BFLOAT16)[::2])
    with pytest.raises(ValueError, match=r"got bfloat16\[2, 2\]"):
        nonfinite_count(np.zeros((2, 2), BFLOAT16))


def test_nonfinite_count_refuses_uint8():
    # In a child process: before the fix, the call read out of bounds.
    code = ("import numpy as np\nfrom fastopt._kernels import nonfinite_count\n"
            "try:\n    print(nonfinite_count(np.full(8, 255, np.uint8)))\nexcept ValueError as e:\n    print('refused', e)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("refused"), done.stdout + done.stderr


def test_the_chosen_build_is_tested():
    assert BoundStep is _kernels.kernels.BoundStep
