"""Layer base class, the public ``kernel_fn`` driver and the ``serial`` combinator.

A network is an immutable :class:`equinox.Module`: hyperparameters are leaves (so
``jax.grad``/``jax.vmap`` and NumPyro sample sites reach them), structure is static.
Every layer, and every composition of layers, is itself a network with the
neural-tangents triple ``init_fn, apply_fn, kernel_fn = net``.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import difflib
import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import as_float_array, check_finite, full_precision, is_concrete
from . import _batching, _ids, _masking, _native
from ._kernel import Kernel

__all__ = ["Layer", "serial", "check_hyper", "split_rng", "KERNEL_GETS", "NOT_GIVEN"]

KERNEL_GETS = ("nngp", "ntk", "cov1", "cov2")


class _NotGiven:
    """Default of a per-call keyword argument that was not passed (``None`` means
    something: ``pattern=None`` is the identity graph, as in neural-tangents)."""

    def __repr__(self) -> str:
        return "<not given>"


NOT_GIVEN = _NotGiven()
_namedtuples: dict[tuple, type] = {}


def _kernel_tuple(names: tuple) -> type:
    if names not in _namedtuples:
        _namedtuples[names] = collections.namedtuple("Kernel", names)
    return _namedtuples[names]


def check_hyper(
    value,
    name: str,
    layer: str,
    *,
    allow_none: bool = False,
    positive=False,
    signed=False,
    meaning: str = "a standard deviation",
):
    """Validate a scalar hyperparameter when it is concrete (tracers pass through):
    finite, and ``>= 0`` (it is ``meaning``) unless ``signed``, ``> 0`` if ``positive``."""
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{layer}: `{name}` must be a number, got None")
    if isinstance(value, str | bytes) or not hasattr(jnp.asarray(value), "dtype"):
        raise TypeError(f"{layer}: `{name}` must be a number, got {type(value).__name__}")
    if is_concrete(value):
        # numpy, not jnp: inside jit even constants become tracers under jnp.
        arr = np.asarray(value)
        if arr.ndim != 0:
            raise ValueError(
                f"{layer}: `{name}` must be a scalar, got shape {arr.shape}; "
                "use jax.vmap to batch over hyperparameters"
            )
        v = float(arr)
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"{layer}: `{name}` must be finite, got {v}")
        if positive and v <= 0:
            raise ValueError(f"{layer}: `{name}` must be > 0, got {v}")
        if v < 0 and not signed:
            raise ValueError(
                f"{layer}: `{name}` is {meaning} and must be >= 0, got {v}"
                + ("; pass its absolute value" if meaning == "a standard deviation" else "")
            )


def ask(layer, method: str, *args):
    """``layer.<method>(*args)``, called through the layer's class. Equinox builds a
    bound-method module on each lookup of a method on an instance (~25 us); the walks
    over a network that every ``kernel_fn`` call makes (``call_kwargs``,
    ``uses_point_ids``, ``output_shape``; ``mixes_space`` and ``needs_full_spatial`` for
    spatial inputs) paid that per layer and per level: 0.4 ms for
    ``call_kwargs`` of a 7-layer network, against 0.03 ms this way."""
    return getattr(type(layer), method)(layer, *args)


class Layer(eqx.Module):
    """Base class of all layers and networks.

    Subclasses implement ``kernel`` (the infinite-width recursion on a
    :class:`Kernel`), ``init``/``apply`` (the finite-width twin) and, when the
    layer changes the shape, ``output_shape``.
    """

    # ---- to implement -------------------------------------------------------------
    def kernel(self, k):  # pragma: no cover - abstract
        raise NotImplementedError

    def init(self, key, input_shape):
        return self.output_shape(input_shape), ()

    def apply(self, params, x, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def output_shape(self, input_shape):
        """Validate ``input_shape`` and return the output shape (no computation)."""
        return input_shape

    def prior_std(self, input_shape):
        """Prior standard deviations of the finite parameters, a pytree shaped like the
        ``params`` of ``init_fn(key, input_shape)``: ``init_fn`` draws each leaf as
        ``prior_std * N(0, 1)`` (a scalar per leaf, ``None`` where the parameter is
        ``None``; 0 for a parameter that ``apply_fn`` ignores). A finite Bayesian
        network puts its weight priors on these and calls ``apply_fn``.

        Parameter-free layers return their (empty) ``params``; a layer with parameters
        whose prior it does not state raises ``NotImplementedError``.
        """
        _, params = jax.eval_shape(lambda k: self.init(k, input_shape), jax.random.PRNGKey(0))
        if jax.tree_util.tree_leaves(params):
            raise NotImplementedError(
                f"{type(self).__name__} has parameters but does not state their prior "
                "(prior_std); supported: Dense, Conv, GlobalSelfAttention, parameter-free layers"
            )
        return params

    def needs_full_spatial(self, out_full: bool) -> bool:
        """Whether this layer needs cross-position covariances of its input, given
        whether its consumer needs them of its output (``out_full``)."""
        return out_full

    def mixes_space(self) -> bool:
        """Whether the layer combines different spatial positions (Conv, pooling,
        attention); an output that keeps spatial axes after such a layer is a kernel
        over positions, which a user rarely means (see ``spatial_output``)."""
        return False

    def ends_segment(self) -> bool:
        """Whether ``serial`` materialises the kernel after this layer, with the layers
        since the last such point, as one segment (nonlinearities; see
        :func:`_segment`)."""
        return False

    def kernel_of_inputs(self, x1, x2, k):
        """The kernel after this layer computed from the inputs ``x1``, ``x2`` themselves
        (``k``: their input kernel, for its metadata), or ``None`` where the layer has no
        such form and ``kernel(k)`` is the way (every layer but ``Conv`` and ``serial``
        starting with one)."""
        return None

    def needs_same_points(self) -> bool:
        """Whether the kernel must know which pairs are one point twice (train-mode
        ``Dropout``, whose masks are shared only by a point and itself); combinators
        ask their layers."""
        return any(ask(lay, "needs_same_points") for lay in getattr(self, "layers", ()))

    def _children(self) -> tuple:
        """The layers a combinator holds (``layers`` of serial/parallel, ``layer`` of
        ``repeat``); none for a plain layer."""
        children = tuple(getattr(self, "layers", ()))
        if isinstance(getattr(self, "layer", None), Layer):
            children += (self.layer,)
        return children

    def uses_point_ids(self) -> bool:
        """Whether the kernel evaluates pairs of equal points by their same-point form
        (nonlinearities), so ``kernel_fn`` computes ``Kernel.point_ids``; combinators ask
        their layers."""
        return any(ask(lay, "uses_point_ids") for lay in Layer._children(self))

    def call_kwargs(self) -> frozenset:
        """Per-call keyword arguments of ``kernel_fn``/``apply_fn`` that the network's
        layers read (``"pattern"`` for ``Aggregate``); combinators ask their layers."""
        return frozenset().union(*(ask(lay, "call_kwargs") for lay in Layer._children(self)))

    # ---- neural-tangents triple ---------------------------------------------------
    @property
    def init_fn(self):
        return self.init

    @property
    def apply_fn(self):
        return self._checked_apply

    def _checked_apply(self, params, inputs, **kwargs):
        """``apply`` after refusing a ``pattern`` that no layer of the network reads
        (``Aggregate`` layers check their own). With ``mask_constant`` (or a
        :class:`MaskedArray` input) the output is a ``MaskedArray``, as in
        neural-tangents (see :func:`ntk_bayes.stax.unmask_fn`)."""
        if kwargs.get("pattern") is not None and "pattern" not in self.call_kwargs():
            raise ValueError(
                "apply_fn: `pattern` is read only by stax.Aggregate layers, and this network "
                "has none; drop `pattern` or add stax.Aggregate()"
            )
        mask_constant = kwargs.pop("mask_constant", None)
        if mask_constant is not None or isinstance(inputs, _masking.MaskedArray):
            return _masking.apply_masked(self, params, inputs, mask_constant, **kwargs)
        return self.apply(params, inputs, **kwargs)

    def __iter__(self):
        return iter((self.init_fn, self.apply_fn, self.kernel_fn))

    def __getitem__(self, index):
        """``net[2]`` is ``kernel_fn``, as in neural-tangents' ``(init_fn, apply_fn,
        kernel_fn)`` triple."""
        return (self.init_fn, self.apply_fn, self.kernel_fn)[index]

    @full_precision
    def kernel_fn(
        self,
        x1: jax.typing.ArrayLike | Kernel,
        x2: jax.typing.ArrayLike | None = None,
        get: str | tuple[str, ...] | None = None,
        *,
        memory_budget: int | str | None = None,
        block_size: int | None = None,
        spatial_output: str | None = None,
        devices: int | Sequence[jax.Device] | None = None,
        pattern: Any = NOT_GIVEN,
        mask_constant: float | None = None,
        **unused: Any,
    ) -> Kernel | jax.Array | tuple[jax.Array, ...]:
        """Analytic NNGP/NTK kernels of this network between ``x1`` and ``x2``.

        On CPU, ``"nngp"``/``"ntk"`` of a network of ``Dense`` and ReLU-family layers run
        a native kernel where a C++ compiler could build it (the same kernels to
        round-off; :func:`~ntk_bayes.stax.native_status`,
        :func:`~ntk_bayes.stax.native_disabled`); everything else, and every derivative,
        runs the XLA program.

        Args:
            x1: inputs ``(n1, features)``, ``(n1, H, W, C)`` or ``(n1, T, C)``.
            x2: second inputs of the same trailing shape; ``None`` means ``x1``.
            get: ``None`` (the whole :class:`Kernel` state), one of
                ``"nngp"``, ``"ntk"``, ``"cov1"``, ``"cov2"`` (an array), or a tuple
                of them (a namedtuple with those fields), as in neural-tangents.
            memory_budget: bytes the computation may use at once (an int, or a string
                such as ``"1GB"`` or ``"512MiB"``); tiles of the
                ``n1 x n2`` problem are sized to fit. Default: a fraction of free memory.
            block_size: force tiles of at most this many rows/columns.
            spatial_output: what to return when the network's output keeps spatial
                axes (no ``Flatten``/global pooling readout): ``"diagonal"``
                (same-position covariances, ``(n1, n2, H, W)``) or ``"full"`` (every
                pair of positions, ``(n1, n2, H, H', W, W')``). ``None`` (default)
                raises for networks with Conv/pooling/attention layers, where a
                kernel over positions usually means a forgotten readout, and gives
                ``"diagonal"`` for pointwise networks.
            devices: where the tiles run: ``None`` (all local devices of the default
                backend), an int (the first that many), or a sequence of devices.
                Tiles are split evenly across them with ``jax.shard_map``. With
                ``None``, a kernel that is a single tile runs on the default device
                alone; an explicit value always spreads the tiles.
            pattern: for networks with :class:`~ntk_bayes.stax.Aggregate` layers (and
                only for them), ``(pattern1, pattern2)``: the graphs of ``x1`` and
                ``x2``, one per point (leading axis ``n1`` and ``n2``), in the format
                of the layer's ``implementation``; ``pattern2`` may be ``None`` when
                ``x2`` is. ``(None, None)`` is the identity graph (no aggregation).
            mask_constant: the value that marks padding in ``x1`` and ``x2`` (e.g. of
                variable-length sequences), as in neural-tangents: entries equal to it
                (NaN entries for NaN) are masked; a position whose channels are all
                masked takes no part in pooling averages, attention or LayerNorm
                statistics, and its kernel entries are 0. See ``docs/kernels.md``.

        Returns:
            Arrays of shape ``(n1, n2)`` (plus spatial axes if not read out).
        """
        if unused:
            _reject_kwargs(unused)
        names, want_all = _parse_get(get)
        _batching.check_block_size(block_size)
        if isinstance(x1, Kernel):
            given = {
                "memory_budget": memory_budget,
                "block_size": block_size,
                "devices": devices,
                "spatial_output": spatial_output,
            }
            given = [k for k, v in given.items() if v is not None]
            if given:
                raise ValueError(
                    f"kernel_fn: {', '.join(f'`{g}`' for g in given)} shape(s) the "
                    "computation from inputs; a Kernel passed as `x1` (kernel composition) is "
                    "continued as it is, in one program where its arrays live. Pass them to "
                    "the call that computed the Kernel, and drop them here"
                )
            if mask_constant is not None:
                raise ValueError(
                    "kernel_fn: `mask_constant` marks padding in inputs; a Kernel passed "
                    "as `x1` already carries the masks of the inputs it was computed from "
                    "(get=None with mask_constant); drop mask_constant here"
                )
            return _continue(self, x1, x2, names, want_all, get, pattern)
        memory_budget = _batching.parse_bytes(memory_budget, "memory_budget")
        one_set = x2 is None or x2 is x1
        x1, x2, out_shape, masks = _check_inputs(self, x1, x2, mask_constant)
        n2 = None if x2 is None else x2.shape[0]
        side = _layer_inputs(self, pattern, x1.shape[0], n2)
        if side is not None and side[1] is not side[0]:
            # Two graphs: even one set of points is two sets of nodes (not symmetric).
            x2, one_set = (x1 if x2 is None else x2), False
        extra = ({}, {})  # per-point inputs of layers: they travel with their points
        for name, pair in (("pattern", side), ("mask", masks)):
            if pair is not None:
                extra[0][name], extra[1][name] = pair
        same = _same_inputs(self, x1, x2, one_set, extra if extra[0] else None)
        ids = None
        if self.uses_point_ids():
            parts = [
                [x] + jax.tree_util.tree_leaves(e) for x, e in zip((x1, x2), extra, strict=True)
            ]
            equal = one_set or (is_concrete(same) and bool(same))  # x2 equals x1
            ids = _ids.point_ids(parts[0], None if equal else parts[1])
            if is_concrete(ids[0]) and not _ids.has_copies(ids, equal):
                ids = None  # every pair of equal points is a self-pair: the index says so
            else:
                ids = tuple(jnp.asarray(i) for i in ids)
                extra[0]["ids"], extra[1]["ids"] = ids
        shapes = (x1.shape, (x1 if x2 is None else x2).shape)
        opts = (want_all or "ntk" in names, *_layouts(self, x1.shape, out_shape, spatial_output))
        native = _native.plan(self, x1, x2, names, want_all, extra, devices)
        points = (x1, x2)  # without the per-point inputs (the native kernel's own)
        if extra[0]:
            x1 = (x1, extra[0])
            x2 = None if one_set else (x2, extra[1])
        if want_all:
            names = KERNEL_GETS
        plan = dict(same=same, memory_budget=memory_budget, block_size=block_size, devices=devices)

        def computed(a, b):
            """The XLA program: (its state when it is one program, else None; outputs)."""
            whole = _batching.one_program(self, _block, opts, a, b, names, **plan)
            if whole is not None:
                return whole, {name: getattr(whole, name) for name in names}
            _batching.check_output_fits(self, _block, opts, a, b, names, devices)
            return None, _batching.tiled_kernel(self, _block, opts, a, b, names, **plan)

        if native is None:
            whole, out = computed(x1, x2)
        else:
            # a fully connected ReLU-family network on CPU: one pass per tile
            # (stax/_native.py); its derivatives are the XLA program's
            _batching.check_output_fits(self, _block, opts, x1, x2, names, devices)

            def xla(a, b):
                a = (a, extra[0]) if extra[0] else a
                b = b if b is None or not extra[1] else (b, extra[1])
                return tuple(computed(a, b)[1][name] for name in names)

            arrays = _native.kernels(native, *points, ids, same, names, xla)
            whole, out = None, dict(zip(names, arrays, strict=True))
        _check_finite_outputs(out)
        if want_all:
            # The final state's static structure (shapes, layout, flags): from the one
            # program, or traced on one pair with the tiled arrays put in, so get=None
            # is tiled like any get.
            x2_ = x1 if x2 is None else x2
            pairs = None if same is None else (same, jnp.asarray(0, jnp.int32))
            k = whole
            if k is None:
                k = jax.eval_shape(
                    lambda a, b: _block(self, a, b, None, *opts),
                    _batching.head(x1),
                    _batching.head(x2_),
                )
            # The output's masks stay with the state, for kernel composition.
            out_masks = None if masks is None else _masking.output_masks(self, masks, *shapes)
            return k.replace(
                same_points=pairs,
                point_ids=ids,
                shape1=(_batching.n_points(x1),) + k.shape1[1:],
                shape2=(_batching.n_points(x2_),) + k.shape2[1:],
                layer_inputs=None if out_masks is None else {"mask": out_masks},
                **out,
            )
        if isinstance(get, str):
            return out[names[0]]
        return _kernel_tuple(names)(*(out[n] for n in names))


# False inside ``outputs_unchecked()``: a caller that inspects the kernels itself (the
# calibration's pre-fit check names the models each kernel feeds).
_CHECK_FINITE = contextvars.ContextVar("ntk_bayes_check_finite_outputs", default=True)


@contextlib.contextmanager
def outputs_unchecked():
    """``kernel_fn`` returns non-finite outputs as they are (for callers that check)."""
    token = _CHECK_FINITE.set(False)
    try:
        yield
    finally:
        _CHECK_FINITE.reset(token)


@jax.jit
def _all_finite(arrays):
    # one AND-reduction per output: 1.65 ms for 2048² float32 on 2 cores, where counting
    # NaN and inf separately took 15 ms; the counts are taken only for the message
    return [jnp.all(jnp.isfinite(a)) for a in arrays]


@jax.jit
def _non_finite_counts(a):
    return jnp.count_nonzero(jnp.isnan(a)), jnp.count_nonzero(jnp.isinf(a))


def _check_finite_outputs(out: dict) -> None:
    """An output with NaN or inf entries is refused, naming what left the dtype's range.

    The inputs are checked before any work (``_check_points``), but a network can leave
    the range inside: ``Exp`` twice in float32 (E[e^(2u)] = e^(2q) of a variance q that
    is already e^10), ``Gaussian`` with ``b > 0`` past its bound, high-degree
    polynomials, weights whose variance grows layer by layer. neural-tangents returns
    such kernels as they are. One reduction per output, over memory the kernel has
    left: an eager 3-layer ReLU NNGP + NTK at n = 2048 took 3.3 ms longer (paired
    median of 25 alternating calls, 20.3 -> 24.1 ms best; 2-core CPU, idle). Under
    ``jax.jit``, ``grad`` or ``vmap`` the outputs are not values yet and nothing is
    checked (nor paid)."""
    if not _CHECK_FINITE.get():
        return
    checked = {
        name: a
        for name, a in out.items()
        if a is not None and is_concrete(a) and jnp.issubdtype(a.dtype, jnp.inexact)
    }
    if not checked:
        return
    for (name, a), ok in zip(checked.items(), _all_finite(list(checked.values())), strict=True):
        if bool(ok):
            continue
        n_nan, n_inf = (int(c) for c in _non_finite_counts(a))
        wider = (
            "float64 (jax.config.update('jax_enable_x64', True) and float64 inputs), "
            if jnp.finfo(a.dtype).bits < 64
            else ""
        )
        raise ValueError(
            f"kernel_fn: the {name} output has {n_nan + n_inf} non-finite entries of "
            f"{a.size} ({n_inf} inf, {n_nan} NaN): the network's variances left the "
            f"range of {a.dtype} (largest {float(jnp.finfo(a.dtype).max):.3g}) inside "
            f"its layers. Use {wider}smaller W_std or b_std, or inputs of smaller scale"
        )


KERNEL_FN_KWARGS = (
    "x1",
    "x2",
    "get",
    "memory_budget",
    "block_size",
    "spatial_output",
    "devices",
    "pattern",
    "mask_constant",
)


def _reject_kwargs(unused: dict) -> None:
    bad = sorted(unused)
    hints = []
    for name in bad:
        near = difflib.get_close_matches(name, KERNEL_FN_KWARGS, n=1, cutoff=0.6)
        hints.append(f"{name!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    raise TypeError(
        f"kernel_fn got unexpected keyword argument(s) {', '.join(hints)}; valid ones are "
        f"{', '.join(KERNEL_FN_KWARGS)}"
    )


def _continue(net, k: Kernel, x2, names, want_all, get, pattern=NOT_GIVEN):
    """neural-tangents' kernel composition: a :class:`Kernel` passed where inputs go
    (e.g. ``kernel_fn(kernel_fn(x1, x2))``) continues the recursion from that state."""
    if x2 is not None:
        raise ValueError(
            "kernel_fn: when `x1` is a Kernel (kernel composition), `x2` must be None; the "
            "Kernel already pairs its two sets of inputs"
        )
    if isinstance(k.nngp, jax.ShapeDtypeStruct):  # pragma: no cover - defensive
        raise ValueError("kernel_fn: the Kernel passed as `x1` holds no arrays")
    if (want_all or "ntk" in names) and k.ntk is None:
        raise ValueError(
            "kernel_fn: the Kernel passed as `x1` has no NTK; compute it with get=None or "
            "a get that includes 'ntk'"
        )
    if k.diagonal_spatial and k.n_spatial > 0 and net.needs_full_spatial(False):
        raise ValueError(
            "kernel_fn: this network needs covariances between positions, but the Kernel "
            "passed as `x1` holds same-position covariances only; compute it with "
            "spatial_output='full'"
        )
    if not want_all and "ntk" not in names:
        k = k.replace(ntk=None)
    # pattern2=None reuses pattern1 when both sets have the same size (x2 omitted).
    n1, n2 = k.shape1[0], k.shape2[0]
    side = _layer_inputs(net, pattern, n1, None if n2 == n1 else n2)
    if side is not None and side[1] is not side[0] and k.same_points is not None:
        same, offset = k.same_points  # same points on different graphs are not the same
        shapes_equal = side[0].shape == side[1].shape
        same = same & (jnp.array_equal(*side) if shapes_equal else False)
        k = k.replace(same_points=(same, offset))
    if side is not None:
        k = k.replace(point_ids=None)  # the ids did not see these graphs
    masks = _masking.kernel_masks(k)  # a masked state keeps its masks (see kernel_fn)
    if masks is not None:
        _masking.check_network(net)
    inputs = dict(pattern=side, mask=masks)
    k = k.replace(layer_inputs={n: v for n, v in inputs.items() if v is not None} or None)
    out = _continue_jit(net, k)
    _check_finite_outputs({n: getattr(out, n) for n in KERNEL_GETS})  # as kernel_fn's
    out_masks = _masking.kernel_masks(out)
    out = out.replace(layer_inputs=None if out_masks is None else {"mask": out_masks})
    if want_all:
        return out
    if isinstance(get, str):
        return getattr(out, names[0])
    return _kernel_tuple(names)(*(getattr(out, n) for n in names))


@jax.jit
def _continue_jit(net, k):
    out = net.kernel(k) if _masking.kernel_masks(k) is None else _masking.masked_kernel(net, k)
    if isinstance(out, list | tuple):
        raise ValueError(
            f"the network ends with {len(out)} parallel branches; close them with "
            "FanInSum() or FanInConcat() before the readout"
        )
    return out


def _same_inputs(net, x1, x2, one_set: bool, side=None):
    """Whether ``x2`` is ``x1`` (omitted, the same array, or equal in value, as
    neural-tangents decides; with equal per-point keyword arguments, e.g. the same
    graphs), a boolean scalar; ``None`` when the shapes differ and no layer needs to
    know. Nonlinearities use it to evaluate self-pairs exactly."""
    if one_set:
        return jnp.asarray(True)
    shapes = lambda t: [jnp.shape(a) for a in jax.tree_util.tree_leaves(t)]
    if x1.shape != x2.shape or (side is not None and shapes(side[0]) != shapes(side[1])):
        return jnp.asarray(False) if net.needs_same_points() else None
    same = jnp.array_equal(x1, x2)
    if side is not None:
        for a, b in zip(*(jax.tree_util.tree_leaves(s) for s in side), strict=True):
            same = same & jnp.array_equal(a, b)
    return same


def _layer_inputs(net, pattern, n1: int, n2: int | None):
    """``(pattern1, pattern2)`` checked against the network and the points (``None``:
    no aggregation). Formats and node counts are the layer's to check (``Aggregate``);
    here: the pair, the leading axes and the dtypes, before any work."""
    takes = "pattern" in net.call_kwargs()
    if pattern is NOT_GIVEN:
        if takes:
            raise ValueError(
                "kernel_fn: this network has stax.Aggregate layers, which need "
                "`pattern`=(pattern1, pattern2): the graphs of x1 and x2, e.g. adjacency "
                "arrays of shape (n1, V, V) and (n2, V, V) for V nodes (pattern2=None when "
                "x2 is None); pass pattern=(None, None) for no aggregation"
            )
        return None
    if not takes:
        if pattern is None or (
            isinstance(pattern, tuple | list) and all(q is None for q in pattern)
        ):
            return None
        raise ValueError(
            "kernel_fn: `pattern` is read only by stax.Aggregate layers, and this network "
            "has none; drop `pattern` or add stax.Aggregate()"
        )
    if pattern is None:
        return None
    if not isinstance(pattern, tuple | list) or len(pattern) != 2:
        what = f"shape {np.shape(pattern)}" if hasattr(pattern, "shape") else repr(pattern)
        raise ValueError(
            f"kernel_fn: `pattern` must be a pair (pattern1, pattern2) for x1 and x2, got "
            f"{what}; for x2=None pass (pattern, None)"
        )
    p1, p2 = pattern
    if p1 is None and p2 is None:
        return None
    if p2 is None and n2 is None:
        p2 = p1
    if p1 is None or p2 is None:
        raise ValueError(
            "kernel_fn: `pattern` has one graph and one None; give both (pattern1, "
            "pattern2), or (None, None) for no aggregation"
        )
    q1 = _check_pattern(p1, "pattern1", n1, "x1")
    if p2 is p1 and n2 is None:
        return q1, q1
    return q1, _check_pattern(p2, "pattern2", n1 if n2 is None else n2, "x2")


def _check_pattern(p, name: str, n: int, xs: str):
    if not isinstance(p, jax.Array | np.ndarray):
        try:
            p = np.asarray(p)
        except Exception:
            p = np.asarray(p, dtype=object)
    dtype = np.dtype(p.dtype)
    if dtype.kind not in "biuf":  # bool, int, unsigned, float
        raise ValueError(
            f"kernel_fn: `pattern` ({name}) must hold real numbers (a float, int or bool "
            f"adjacency array, or int edge lists for implementation='SPARSE'), got dtype "
            f"{dtype}"
        )
    if p.ndim < 1 or p.shape[0] != n:
        raise ValueError(
            f"kernel_fn: `pattern` ({name}) must have one graph per point of {xs}, i.e. a "
            f"leading axis of {n}, got shape {tuple(p.shape)}"
        )
    if np.issubdtype(dtype, np.floating):
        check_finite(p, f"pattern ({name})")
    return jnp.asarray(p)


def _block(net, x1, x2, same_points, need_ntk: bool, full: bool, out_full: bool) -> Kernel:
    side = None
    ids = None
    if isinstance(x1, tuple):  # (points, per-point inputs of layers): see kernel_fn
        (x1, e1), (x2, e2) = x1, x2
        side = {name: (e1[name], e2[name]) for name in e1 if name != "ids"}
        ids = (e1["ids"], e2["ids"]) if "ids" in e1 else None
    k = _input_kernel(x1, x2, need_ntk, not full, same_points).replace(point_ids=ids)
    k = k if not side else k.replace(layer_inputs=side)
    if side and "mask" in side:
        k = _masking.masked_kernel(net, k)
    else:
        # a first Conv takes its window sums of the inputs' products as products of the
        # inputs' patches (the input kernel's arrays are then unused: not computed
        # under jit)
        out = None if side else ask(net, "kernel_of_inputs", x1, x2, k)
        k = net.kernel(k) if out is None else out
    if isinstance(k, list | tuple):
        raise ValueError(
            f"the network ends with {len(k)} parallel branches; close them with "
            "FanInSum() or FanInConcat() before the readout"
        )
    if not out_full and not k.diagonal_spatial:
        # Pooling/attention inside needed every pair of positions, but the caller asked
        # for same-position covariances only.
        k = k.to_diagonal()
    return k


def _parse_get(get):
    if get is None:
        return KERNEL_GETS[:2], True
    if isinstance(get, Sequence) and not isinstance(get, str) and len(get) == 0:
        raise ValueError(f"`get` is empty; name at least one of {KERNEL_GETS}, or pass None")
    if isinstance(get, str):
        names = (get,)
    elif isinstance(get, Sequence) and all(isinstance(g, str) for g in get) and len(get) > 0:
        names = tuple(get)
    else:
        raise TypeError(f"`get` must be None, a string or a tuple of strings, got {get!r}")
    for g in names:
        if g not in KERNEL_GETS:
            raise ValueError(f"`get` has unknown kernel {g!r}; choose from {KERNEL_GETS}")
    if len(set(names)) != len(names):
        raise ValueError(f"`get` names a kernel twice: {names}")
    return names, False


def _check_inputs(net, x1, x2, mask_constant=None):
    """Checked inputs, the output shape and, with ``mask_constant``, the inputs with
    padding set to 0 and ``(mask1, mask2)``: position masks ``(n, *S, 1)`` (``None``
    for inputs without spatial axes, where masking only zeroes entries)."""
    if mask_constant is not None:
        _masking.check_mask_constant(mask_constant, "kernel_fn")
        _masking.check_network(net)
    x1 = as_float_array(x1, "x1")
    if x1.ndim < 2:
        raise ValueError(
            f"`x1` must have a leading batch axis, e.g. (n, features); got shape {x1.shape}. "
            "Reshape a single point with x[None]."
        )
    x1, m1 = _masked_points(x1, "x1", mask_constant)
    m2 = m1
    if x2 is not None:
        x2 = as_float_array(x2, "x2")
        if x2.shape[1:] != x1.shape[1:]:
            raise ValueError(
                f"`x2` has per-point shape {x2.shape[1:]} but `x1` has {x1.shape[1:]}; "
                "both must share every axis but the first"
            )
        x2, m2 = _masked_points(x2, "x2", mask_constant)
        dtype = jnp.promote_types(x1.dtype, x2.dtype)
        x1, x2 = x1.astype(dtype), x2.astype(dtype)
    out_shape = net.output_shape(x1.shape)  # validates the architecture before any work
    masks = None if m1 is None else (m1, m2)
    return x1, x2, out_shape, masks


def _masked_points(x, name: str, mask_constant):
    """``x`` (padding set to 0) and its position mask, checked; no mask without
    ``mask_constant`` or spatial axes."""
    if mask_constant is None:
        _check_points(x, name)
        return x, None
    x, mask = _masking.input_mask(x, mask_constant)
    _check_points(x, name)
    mask = _masking.position_mask(mask)
    _masking.check_not_all_masked(mask, name)
    return x, (None if x.ndim == 2 else mask)


def _check_points(x, name: str) -> None:
    """No points, no features, non-finite entries, or entries so large that the input
    kernel's sums of squares over the features, or the products q1 q2 of two points'
    variances that the nonlinearities form, leave the dtype's range: refused. (Inside it,
    float32 kept every product finite up to inputs ~1e9 and lost the kernels to overflow
    from ~1e10, where the old bound, on single squares, let inputs through up to 2.9e17.)"""
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` has no points (shape {x.shape}); pass at least one")
    if x.shape[-1] == 0:
        raise ValueError(
            f"`{name}` has zero features (shape {x.shape}); the kernel of no features is "
            "undefined (0/0)"
        )
    if is_concrete(x):
        a = np.asarray(x)
        # two reductions, no temporary; NaN propagates through both, so a finite
        # result means every entry is finite (the message comes from check_finite)
        big = max(float(a.max()), -float(a.min()))
        if not math.isfinite(big):
            check_finite(x, name)
        top = float(jnp.finfo(x.dtype).max) / 64  # room for a few layers' W_std²
        c = x.shape[-1]
        # Σ x_c² over the features, and q1 q2 <= (max entry)⁴ in the nonlinearities
        limit = min(math.sqrt(top / c), top**0.25)
        if big > limit:
            raise ValueError(
                f"`{name}` has entries up to {big:.3g}: with {c} feature(s) the kernel's sums "
                "of squares or the products of two points' variances in its layers would "
                f"overflow {x.dtype} (largest {float(jnp.finfo(x.dtype).max):.3g}; entries up "
                f"to {limit:.3g} are safe); rescale the inputs (e.g. standardise each feature) "
                "or enable float64 with jax.config.update('jax_enable_x64', True) and pass "
                "float64 arrays"
            )


SPATIAL_OUTPUTS = (None, "diagonal", "full")


def _layouts(net, in_shape, out_shape, spatial_output) -> tuple[bool, bool]:
    """Whether the input kernel must keep cross-position covariances, and whether the
    output must (``spatial_output="full"`` for an output with spatial axes)."""
    if spatial_output not in SPATIAL_OUTPUTS:
        raise ValueError(
            f"`spatial_output` must be None, 'diagonal' or 'full', got {spatial_output!r}"
        )
    if len(in_shape) <= 2:
        return False, False
    out_full = False
    multi = isinstance(out_shape, list) and out_shape and not isinstance(out_shape[0], int)
    if not multi and len(out_shape) > 2:
        if spatial_output is None and net.mixes_space():
            raise ValueError(
                f"the network's output {tuple(out_shape)} still has spatial axes after "
                "Conv/pooling/attention layers, so its kernel would be one covariance per pair "
                "of positions; add a readout (stax.GlobalAvgPool() or stax.Flatten(), then "
                "Dense) or, if a kernel over positions is what you want, pass "
                "spatial_output='diagonal' or 'full'"
            )
        out_full = spatial_output == "full"
    return net.needs_full_spatial(out_full), out_full


def _input_kernel(x1, x2, need_ntk: bool, diagonal_spatial: bool, same_points=None) -> Kernel:
    """Kernel of the inputs themselves: Σ = x1·x2 / C over channels."""
    c = x1.shape[-1]
    n_sp = x1.ndim - 2
    if n_sp == 0 or diagonal_spatial:
        nngp = jnp.einsum("i...c,j...c->ij...", x1, x2) / c
        cov1 = jnp.sum(x1 * x1, axis=-1) / c
        cov2 = jnp.sum(x2 * x2, axis=-1) / c
    else:
        letters = "abcdefgh"[:n_sp]
        primed = "ABCDEFGH"[:n_sp]
        pair = "".join(a + b for a, b in zip(letters, primed, strict=True))
        nngp = jnp.einsum(f"i{letters}z,j{primed}z->ij{pair}", x1, x2) / c
        cov1 = jnp.einsum(f"i{letters}z,i{primed}z->i{pair}", x1, x1) / c
        cov2 = jnp.einsum(f"i{letters}z,i{primed}z->i{pair}", x2, x2) / c
    return Kernel(
        nngp=nngp,
        ntk=jnp.zeros_like(nngp) if need_ntk else None,
        cov1=cov1,
        cov2=cov2,
        same_points=same_points,
        shape1=tuple(x1.shape),
        shape2=tuple(x2.shape),
        diagonal_spatial=diagonal_spatial or n_sp == 0,
        is_gaussian=False,
        is_input=True,
    )


def split_rng(kwargs: dict, n: int) -> list:
    """Pop ``rng`` from ``kwargs`` and give each of ``n`` sublayers its own key (or
    ``None`` when no key was passed), as neural-tangents' combinators do."""
    rng = kwargs.pop("rng", None)
    return [None] * n if rng is None else list(jax.random.split(rng, n))


class Serial(Layer):
    """Layers applied one after another (``stax.serial``)."""

    layers: tuple

    def kernel(self, k):
        layers, i = self.layers, 0
        segment, packed = [], False
        while i < len(layers):
            run = _repeated_run(layers, i)
            if run is None and not Layer._children(layers[i]):
                segment.append(layers[i])
                i += 1
                if ask(segment[-1], "ends_segment"):
                    k, packed = _segment(tuple(segment), k, packed)
                    segment = []
                continue
            k, segment, packed = _unrolled(segment, _unpacked(k, packed)), [], False
            if run is None:
                k = _checkpointed_kernel(layers[i], k)
                i += 1
                continue
            period, count = run
            k = _scanned_run(layers[i : i + period * count], period, count, k)
            i += period * count
        return _unrolled(segment, _unpacked(k, packed))

    def kernel_of_inputs(self, x1, x2, k):
        # a first layer with a form of its own (Conv's patches), unless it opens a
        # scanned run (whose count would change)
        if not self.layers or _repeated_run(self.layers, 0) is not None:
            return None
        out = ask(self.layers[0], "kernel_of_inputs", x1, x2, k)
        return None if out is None else Serial(layers=self.layers[1:]).kernel(out)

    def init(self, key, input_shape):
        params = []
        for layer in self.layers:
            key, sub = jax.random.split(key)
            input_shape, p = layer.init(sub, input_shape)
            params.append(p)
        return input_shape, tuple(params)

    def prior_std(self, input_shape):
        stds = []
        for layer in self.layers:
            stds.append(layer.prior_std(input_shape))
            input_shape = layer.output_shape(input_shape)
        return tuple(stds)

    def apply(self, params, x, **kwargs):
        if len(params) != len(self.layers):
            raise ValueError(
                f"`params` has {len(params)} entries but the network has {len(self.layers)} "
                "layers; pass the params returned by this network's init_fn"
            )
        rngs = split_rng(kwargs, len(self.layers))
        for layer, p, rng in zip(self.layers, params, rngs, strict=True):
            x = layer.apply(p, x, **kwargs, rng=rng)
        return x

    def output_shape(self, input_shape):
        for i, layer in enumerate(self.layers):
            try:
                input_shape = ask(layer, "output_shape", input_shape)
            except (ValueError, TypeError) as e:
                raise type(e)(f"layer {i} ({type(layer).__name__}) of serial: {e}") from None
        return input_shape

    def needs_full_spatial(self, out_full: bool) -> bool:
        for layer in reversed(self.layers):
            out_full = ask(layer, "needs_full_spatial", out_full)
        return out_full

    def mixes_space(self) -> bool:
        return any(ask(layer, "mixes_space") for layer in self.layers)


# A run of structurally identical layers (or groups of up to _SCAN_PERIOD layers)
# repeated at least _SCAN_MIN times is one compiled loop: see _scanned_run. Shallower
# runs stay unrolled, where XLA fuses across layers: a 5-block ReLU network (n = 2048,
# NNGP and NTK) ran 55-62 ms unrolled against 68-75 ms looped (best of 15, interleaved,
# 2026-12-04, under load), while compiling in 3.2 s against 2.3 s.
_SCAN_MIN = 8
_SCAN_PERIOD = 8


class StateChanged(ValueError):
    """A layer's kernel changed the state's structure after its first application, so
    its repetitions cannot run in one loop."""


def _leaf_sig(v):
    return (jnp.shape(v), jnp.result_type(v)) if eqx.is_array_like(v) else None


def _same_structure(a, b) -> bool:
    """Whether two layers differ at most in the values of their array leaves (so their
    repetitions can run in one loop over the stacked leaves)."""
    if a is b:
        return True
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    if ta != tb:
        return False
    for u, v in zip(la, lb, strict=True):
        if u is v:
            continue
        su, sv = _leaf_sig(u), _leaf_sig(v)
        if su is None or su != sv:
            return False
    return True


def _repeated_run(layers, i):
    """``(period, count)`` when ``layers[i:]`` starts with ``count >= _SCAN_MIN``
    repetitions of the structure of its first ``period`` layers (the shortest such
    period), else None."""
    for period in range(1, min(_SCAN_PERIOD, (len(layers) - i) // _SCAN_MIN) + 1):
        head = layers[i : i + period]
        count = 1
        while i + (count + 1) * period <= len(layers) and all(
            _same_structure(a, b)
            for a, b in zip(
                head, layers[i + count * period : i + (count + 1) * period], strict=True
            )
        ):
            count += 1
        if count >= _SCAN_MIN:
            return period, count
    return None


def _packs(k) -> bool:
    """Whether a segment's output is worth materialising as one packed array: on CPU,
    with an NTK beside the NNGP, both pairwise arrays of one real dtype without spatial
    axes, and large enough (fewer pairs than a 64 x 64 tile gain nothing). Kernels with
    spatial axes are not packed: a convolution's window sums (materialised apart, see
    ``_conv``) would read the packed parts through copies of their own; the 3-layer
    CNN benchmark ran 15% slower packed and compiled in 3.6 s instead of 2.9 s."""
    if not isinstance(k, Kernel):
        return False
    nngp, ntk = k.nngp, k.ntk
    return (
        ntk is not None
        and k.layer_inputs is None
        and jax.default_backend() == "cpu"
        and jnp.ndim(nngp) == 2
        and jnp.shape(nngp) == jnp.shape(ntk)
        and jnp.result_type(nngp) == jnp.result_type(ntk)
        and jnp.result_type(nngp) in (jnp.float32, jnp.float64)
        and math.prod(jnp.shape(nngp)) >= _batching.APART_MIN_PAIRS
    )


def _unpacked(k, packed: bool):
    """The kernel state of a packed segment output: ``nngp`` and ``ntk`` are the real
    and imaginary parts of ``k.nngp``."""
    if not packed:
        return k
    return k.replace(nngp=jnp.real(k.nngp), ntk=jnp.imag(k.nngp))


def _segment(layers, k, packed: bool):
    """``k`` through ``layers`` (the last a nonlinearity) as one materialised segment:
    ``(state, packed)``.

    XLA's CPU backend has no multi-output loop fusion: a pairwise value that two
    fusions read (each layer's NNGP feeds the next NNGP and the NTK; a nonlinearity's
    angle feeds both) is recomputed in each of them unless it is "expensive", so the
    NTK of a deep network ended in fusions that re-derived every layer's angle, and the
    cost per layer grew with depth. Here the NNGP and NTK after the segment are packed
    into one complex array, the real and the imaginary part, computed by one fusion
    inside a conditional whose predicate is always true (:func:`_batching.isolated`),
    and the next segment unpacks them inside its own conditional: each layer's pairwise
    work is done once, in one pass that reads and writes one array per pair (ReLU: 50
    operations per pair and layer, where the unpacked program spread about 72 over
    several fusions). Against the unpacked layers (3 layers, n = 2048, NNGP and NTK,
    one process, interleaved, best of 40, 2026-12-04 on the 2-core AVX-512 VM):
    ReLU 22.1 -> 19.1 ms, Gelu 42.0 -> 35.2, Sin 25.1 -> 23.0, Gabor 59.9 -> 35.6, Erf
    35.9 -> 35.6, with the same values (bit for bit for ReLU, 1.5e-7 relative for Gelu).
    JAX differentiates through the packing (its real and imaginary parts are linear)
    and through the conditional; the NNGP alone is not packed (one output fuses anyway).
    """

    def run(k_):
        return _unrolled(layers, _unpacked(k_, packed))

    if not (packed or _packs(k)):
        return run(k), False

    def pack():
        with _batching.fused_segment():
            out = run(k)
        if not _packs(out):
            raise _batching.NotPacked
        return out.replace(nngp=jax.lax.complex(out.nngp, out.ntk), ntk=None)

    try:
        shapes = jax.eval_shape(pack)
    except _batching.NotPacked:
        return run(k), False
    return _batching.apart(lambda _: pack(), jnp.real(k.nngp), shapes), True


def _unrolled(blocks, k):
    for block in blocks:
        k = _checkpointed_kernel(block, k)
    return k


def _scanned_run(layers, period, count, k):
    """The kernel of ``count`` repetitions of a ``period``-layer block, the first unrolled
    (it may change the state's structure, e.g. from inputs to post-activations) and the
    rest in a checkpointed ``lax.scan`` over their stacked array leaves, so each
    repetition keeps its own hyperparameters (and its own gradient); leaves that are one
    object in every repetition stay constants.

    Unrolled, a deep network's XLA program grows with depth and its compilation faster
    than that: ``jax.jacrev`` of a 12-layer ReLU NTK took 44-59 s and 2.4 GB to compile
    (6 layers 12 s), one of 50 layers did not finish in 10 minutes. Blocks whose kernel
    changes the state's structure after the first repetition are unrolled as before."""
    blocks = [
        layers[j * period] if period == 1 else Serial(layers[j * period : (j + 1) * period])
        for j in range(count)
    ]
    k = _checkpointed_kernel(blocks[0], k)
    rest = blocks[1:]
    columns = list(zip(*(jax.tree_util.tree_leaves(b) for b in rest), strict=True))
    treedef = jax.tree_util.tree_structure(rest[0])
    shared = [all(c is col[0] for c in col) for col in columns]
    stacked = [
        None if sh else jnp.stack([jnp.asarray(c) for c in col])
        for sh, col in zip(shared, columns, strict=True)
    ]

    def block_of(xs):
        params = [col[0] if sh else x for sh, col, x in zip(shared, columns, xs, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, params)

    try:
        return scanned_kernel(block_of, stacked, len(rest), k)
    except StateChanged:
        return _unrolled(rest, k)


def scanned_kernel(block_of, xs, length, k):
    """``k`` through ``length`` layers ``block_of(x)`` (``x`` the slices of ``xs``), in
    one ``lax.scan`` whose step is ``jax.checkpoint``ed. Raises :class:`StateChanged`
    (while tracing) when a step changes the state's structure or shapes."""
    leaves, state_def = jax.tree_util.tree_flatten(k)

    def step(carry, x):
        out = block_of(x).kernel(jax.tree_util.tree_unflatten(state_def, carry))
        out_leaves, out_def = jax.tree_util.tree_flatten(out)
        if out_def != state_def or any(
            jnp.shape(o) != jnp.shape(c) for o, c in zip(out_leaves, carry, strict=True)
        ):
            raise StateChanged(
                "the layer's kernel changes the state's structure after its first application"
            )
        return [o.astype(c.dtype) for o, c in zip(out_leaves, carry, strict=True)], None

    leaves, _ = jax.lax.scan(jax.checkpoint(step), leaves, xs, length=length)
    return jax.tree_util.tree_unflatten(state_def, leaves)


def _layer_kernel(layer, k):
    return layer.kernel(k)


_checkpointed = eqx.filter_checkpoint(_layer_kernel)


def _checkpointed_kernel(layer, k):
    """``layer.kernel(k)``, rematerialised in reverse mode: a gradient through a deep
    network keeps each layer's input state, not every temporary of every layer
    (forward-only evaluation is unchanged). Combinators are not wrapped themselves:
    their own layers are, and nesting would recompute them once per level."""
    if hasattr(layer, "layers") or hasattr(layer, "layer"):
        return layer.kernel(k)
    return _checkpointed(layer, k)


def serial(*layers: Any) -> Serial:
    """Compose layers in sequence, as ``neural_tangents.stax.serial``."""
    flat = []
    for i, layer in enumerate(layers):
        if isinstance(layer, list | tuple) and not isinstance(layer, Layer):
            raise TypeError(
                f"serial: argument {i} is a {type(layer).__name__}; pass layers as separate "
                "arguments, e.g. serial(*layers)"
            )
        if not isinstance(layer, Layer):
            raise TypeError(
                f"serial: argument {i} is {type(layer).__name__}, not an ntk_bayes.stax layer"
            )
        flat.append(layer)
    if not flat:
        raise ValueError("serial: needs at least one layer")
    return Serial(tuple(flat))
