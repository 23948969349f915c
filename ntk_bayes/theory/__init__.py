"""Where finite networks stand relative to the kernel regime.

Instruments: linearisation and side-by-side training (:func:`linearize`, :func:`train`),
lazy vs rich scalings (:func:`scaled_mlp`, :func:`kernel_evolution`), finite-width
corrections at initialisation (:func:`finite_width_corrections`), analytic against real
training dynamics (:func:`dynamics_comparison`), signal propagation and the
order-to-chaos line (:func:`signal_propagation`, :func:`critical_line`,
:func:`phase_diagram`, :func:`ntk_spectrum`) and the generalisation bound of Arora et
al. (:func:`generalization_report`). See ``docs/theory.md``.
"""

from ._dynamics import CenteredApply as CenteredApply
from ._dynamics import DynamicsComparison as DynamicsComparison
from ._dynamics import dynamics_comparison as dynamics_comparison
from ._generalization import GeneralizationReport as GeneralizationReport
from ._generalization import arora_bound as arora_bound
from ._generalization import arora_gram as arora_gram
from ._generalization import generalization_report as generalization_report
from ._linearize import effective_ntk_fn as effective_ntk_fn
from ._linearize import linearize as linearize
from ._linearize import taylor_expand as taylor_expand
from ._parameterization import ScaledMLP as ScaledMLP
from ._parameterization import scaled_mlp as scaled_mlp
from ._plots import plot_dynamics as plot_dynamics
from ._plots import plot_finite_width as plot_finite_width
from ._plots import plot_kernel_evolution as plot_kernel_evolution
from ._plots import plot_ntk_spectrum as plot_ntk_spectrum
from ._plots import plot_phase_diagram as plot_phase_diagram
from ._plots import plot_training as plot_training
from ._regimes import FiniteWidthCorrections as FiniteWidthCorrections
from ._regimes import KernelEvolution as KernelEvolution
from ._regimes import LogLogFit as LogLogFit
from ._regimes import default_learning_rate as default_learning_rate
from ._regimes import finite_width_corrections as finite_width_corrections
from ._regimes import fit_loglog as fit_loglog
from ._regimes import kernel_evolution as kernel_evolution
from ._signal import NTKSpectrum as NTKSpectrum
from ._signal import PhaseDiagram as PhaseDiagram
from ._signal import SignalPropagation as SignalPropagation
from ._signal import chi_1 as chi_1
from ._signal import correlation_map as correlation_map
from ._signal import critical_line as critical_line
from ._signal import ntk_spectrum as ntk_spectrum
from ._signal import phase_diagram as phase_diagram
from ._signal import q_star as q_star
from ._signal import signal_propagation as signal_propagation
from ._training import TrainingHistory as TrainingHistory
from ._training import relative_change as relative_change
from ._training import train as train

__all__ = [
    "CenteredApply",
    "DynamicsComparison",
    "FiniteWidthCorrections",
    "GeneralizationReport",
    "KernelEvolution",
    "LogLogFit",
    "NTKSpectrum",
    "PhaseDiagram",
    "ScaledMLP",
    "SignalPropagation",
    "TrainingHistory",
    "arora_bound",
    "arora_gram",
    "chi_1",
    "correlation_map",
    "critical_line",
    "default_learning_rate",
    "dynamics_comparison",
    "effective_ntk_fn",
    "finite_width_corrections",
    "fit_loglog",
    "generalization_report",
    "kernel_evolution",
    "linearize",
    "ntk_spectrum",
    "phase_diagram",
    "plot_dynamics",
    "plot_finite_width",
    "plot_kernel_evolution",
    "plot_ntk_spectrum",
    "plot_phase_diagram",
    "plot_training",
    "q_star",
    "relative_change",
    "scaled_mlp",
    "signal_propagation",
    "taylor_expand",
    "train",
]
