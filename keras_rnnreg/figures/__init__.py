"""The papers' figures as commands: ``rnnreg figure NAME`` writes ``NAME.png`` and ``NAME.csv``.

Every figure is a function of its inputs (nothing, run folders, or search folders of ``rnnreg
tune``) and an output folder; it writes the PNG and its data (CSV) atomically and returns
``{"png", "csv", "columns", "rows"}``. :func:`draw` draws one of :data:`FIGURES` by name,
:func:`draw_quick` from tiny synthetic runs.
"""

from dataclasses import dataclass, field
from pathlib import Path

from keras_rnnreg.figures import noise_study, norm_stabilizer, quick
from keras_rnnreg.figures._common import FigureError


@dataclass(frozen=True)
class Figure:
    name: str
    paper: str  # which paper figure(s)
    title: str
    inputs: str  # "none" | "runs" | "search"
    function: object
    quick_groups: tuple = ()  # quick.RUNS groups it draws from
    quick_options: dict = field(default_factory=dict)
    options: tuple = ()  # keyword options the command line may pass (e.g. "length")


_NS, _NSTAB = "noise study", "norm-stabilizer"
FIGURES = {
    f.name: f
    for f in (
        Figure("noise_loss_surface", f"{_NS} Figs. 2-3",
               "loss surface of a one-unit RNN over initial (w, b), without and with weight noise",
               "none", noise_study.noise_loss_surface,
               quick_options={"grid": 25, "samples": 16}),
        Figure("noise_spectral_radius", f"{_NS} Figs. 5-7",
               "spectral radius of W_hh over epochs: dropout, weight noise, norm penalties",
               "runs", noise_study.noise_spectral_radius, ("jsb",)),
        Figure("noise_sweep", f"{_NS} Figs. 8-10",
               "search score against λ (L1/L2), σ (weight noise), p (DropConnect)",
               "search", noise_study.noise_sweep),
        Figure("ns_learning_curves", f"{_NSTAB} Fig. 1",
               "learning curves for several β, penalty on h and on c",
               "runs", norm_stabilizer.ns_learning_curves, ("lstm",)),
        Figure("ns_norm_horizon", f"{_NSTAB} Figs. 3, 5",
               "‖h_t‖ (and ‖c_t‖) per timestep far past the training horizon, β and costs",
               "runs", norm_stabilizer.ns_norm_horizon, ("lstm", "irnn", "srnn_costs"),
               {"length": 120, "batch": 4}, ("length",)),
        Figure("ns_irnn_lognorm", f"{_NSTAB} Fig. 4",
               "IRNN: mean log ‖h_t‖ and cost per timestep, β = 0 against β > 0",
               "runs", norm_stabilizer.ns_irnn_lognorm, ("irnn",),
               {"length": 120, "batch": 4}, ("length",)),
        Figure("ns_forget_gates", f"{_NSTAB} Fig. 6 (left)",
               "LSTM: sorted mean forget-gate activation per memory cell",
               "runs", norm_stabilizer.ns_forget_gates, ("lstm",), {"batch": 4}),
        Figure("ns_irnn_eigenvalues", f"{_NSTAB} Fig. 6 (right)",
               "IRNN: sorted |eigenvalues| of W_hh, β = 0 against β > 0",
               "runs", norm_stabilizer.ns_irnn_eigenvalues, ("irnn",)),
    )
}


def get(name):
    if name not in FIGURES:
        raise FigureError(f"unknown figure {name!r}; expected one of {', '.join(FIGURES)}")
    return FIGURES[name]


def _check_out(out_dir):
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise FigureError(f"--out {out_dir} is a file; expected a folder for the figure's .png "
                          "and .csv")


def draw(name, out_dir, runs=(), searches=(), **options):
    """Draw figure ``name`` into ``out_dir`` from run folders or search folders.

    ``options``: the figure's keyword options (e.g. ``length`` of the norm probes).
    """
    figure = get(name)
    _check_out(out_dir)
    given = {"runs": list(runs or ()), "search": list(searches or ())}
    takes = {"none": "no input", "runs": "--runs DIR ...", "search": "--search DIR"}[figure.inputs]
    for kind, what in (("runs", "run folders (--runs)"), ("search", "searches (--search)")):
        if figure.inputs != kind and given[kind]:
            raise FigureError(f"{name} does not draw from {what}; it takes {takes}")
    unknown = set(options) - set(figure.options) - set(figure.quick_options)
    if unknown:
        raise FigureError(f"{name} has no option {', '.join(sorted(unknown))}")
    if figure.inputs == "none":
        return figure.function(out_dir, **options)
    return figure.function(given[figure.inputs], out_dir, **options)


def draw_quick(name, out_dir, work=None):
    """Draw ``name`` from its quick inputs (tiny synthetic runs / searches, made once in
    ``work``, default ``out_dir/quick-inputs``)."""
    figure = get(name)
    _check_out(out_dir)
    work = Path(work) if work is not None else Path(out_dir) / "quick-inputs"
    runs = quick.runs(figure.quick_groups, work) if figure.inputs == "runs" else ()
    searches = quick.searches(work) if figure.inputs == "search" else ()
    return draw(name, out_dir, runs=runs, searches=searches, **figure.quick_options)


__all__ = ["FIGURES", "Figure", "FigureError", "draw", "draw_quick", "get"]
