"""Infinite-width layers with neural-tangents' names and keyword arguments.

Every layer and composition is an immutable pytree network::

    net = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))
    init_fn, apply_fn, kernel_fn = net
"""

from ._aggregate import Aggregate as Aggregate
from ._attention import GlobalSelfAttention as GlobalSelfAttention
from ._attention import PositionalEmbedding as PositionalEmbedding
from ._batching import batch as batch
from ._branching import FanInConcat as FanInConcat
from ._branching import FanInSum as FanInSum
from ._branching import FanOut as FanOut
from ._branching import Parallel as Parallel
from ._branching import parallel as parallel
from ._conv import Conv as Conv
from ._conv_more import ConvLocal as ConvLocal
from ._conv_more import ConvTranspose as ConvTranspose
from ._conv_more import ImageResize as ImageResize
from ._core import Layer as Layer
from ._core import Serial as Serial
from ._core import serial as serial
from ._dense import Dense as Dense
from ._dense import Identity as Identity
from ._devices import distributed_kernel_fn as distributed_kernel_fn
from ._dot_general import DotGeneral as DotGeneral
from ._dropout import Dropout as Dropout
from ._elementwise import ABRelu as ABRelu
from ._elementwise import Abs as Abs
from ._elementwise import Cos as Cos
from ._elementwise import CustomElementwise as CustomElementwise
from ._elementwise import Elementwise as Elementwise
from ._elementwise import ElementwiseNumerical as ElementwiseNumerical
from ._elementwise import Erf as Erf
from ._elementwise import Exp as Exp
from ._elementwise import Gaussian as Gaussian
from ._elementwise import Gelu as Gelu
from ._elementwise import LeakyRelu as LeakyRelu
from ._elementwise import Rbf as Rbf
from ._elementwise import Relu as Relu
from ._elementwise import Sigmoid_like as Sigmoid_like
from ._elementwise import Sign as Sign
from ._elementwise import Sin as Sin
from ._enums import AggregateImplementation as AggregateImplementation
from ._enums import AttentionMechanism as AttentionMechanism
from ._enums import Padding as Padding
from ._indexing import Index as Index
from ._indexing import Slice as Slice
from ._kernel import Kernel as Kernel
from ._masking import MaskedArray as MaskedArray
from ._masking import unmask_fn as unmask_fn
from ._native import disabled as native_disabled
from ._native import status as native_status
from ._normalization import LayerNorm as LayerNorm
from ._polynomial import ExpNormalized as ExpNormalized
from ._polynomial import Gabor as Gabor
from ._polynomial import Hermite as Hermite
from ._polynomial import Monomial as Monomial
from ._polynomial import Polynomial as Polynomial
from ._polynomial import RectifiedMonomial as RectifiedMonomial
from ._pooling import AvgPool as AvgPool
from ._pooling import Flatten as Flatten
from ._pooling import GlobalAvgPool as GlobalAvgPool
from ._pooling import GlobalSumPool as GlobalSumPool
from ._pooling import SumPool as SumPool
from ._products import FanInProd as FanInProd
from ._repeat import Repeat as Repeat
from ._repeat import repeat as repeat

__all__ = [
    "AggregateImplementation",
    "AttentionMechanism",
    "Padding",
    "ABRelu",
    "Abs",
    "Aggregate",
    "AvgPool",
    "Conv",
    "ConvLocal",
    "ConvTranspose",
    "Cos",
    "CustomElementwise",
    "Dense",
    "DotGeneral",
    "Dropout",
    "Elementwise",
    "ElementwiseNumerical",
    "Erf",
    "Exp",
    "ExpNormalized",
    "FanInConcat",
    "FanInProd",
    "FanInSum",
    "FanOut",
    "Flatten",
    "Gabor",
    "Gelu",
    "Gaussian",
    "GlobalAvgPool",
    "GlobalSelfAttention",
    "GlobalSumPool",
    "Hermite",
    "Identity",
    "Index",
    "ImageResize",
    "Kernel",
    "Layer",
    "LayerNorm",
    "LeakyRelu",
    "MaskedArray",
    "Monomial",
    "Parallel",
    "PositionalEmbedding",
    "Polynomial",
    "Rbf",
    "RectifiedMonomial",
    "Relu",
    "Repeat",
    "Serial",
    "Sigmoid_like",
    "Sign",
    "Sin",
    "Slice",
    "SumPool",
    "batch",
    "distributed_kernel_fn",
    "native_disabled",
    "native_status",
    "parallel",
    "repeat",
    "serial",
    "unmask_fn",
]
