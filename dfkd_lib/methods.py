"""Every training method, each defined in one place.

A :class:`Method` names the loss terms it adds to the student's objective and the options its
recipe sets on top of the :class:`~dfkd_lib.train.TrainConfig` defaults. Everything else derives
from it: whether a run needs a teacher, a flow plan or discriminators (the engine), the
``--method`` choices and help (the command line), the order and labels of methods in tables and
plots (the report). Adding a method is one entry in :data:`METHODS` plus its tests.

The loss terms (each weighted by its option; see :mod:`dfkd_lib.losses`):

========  ================================================  =====================
term      what it is                                        weight
========  ================================================  =====================
``ce``    cross-entropy on the labelled images              ``ce_weight``
``kd``    Hinton et al.'s soft-label loss                   ``kd_weight``
``at``    attention transfer on the stage outputs           ``at_beta / 2``
``flow``  Euclidean distance of teacher and student flows   ``lambda_flow``
``adv``   the student's loss against the discriminators     ``lambda_adv``
========  ================================================  =====================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TERMS", "RECIPE_VERSIONS", "ADDED_LATER", "Method", "METHODS", "RECIPES", "get_method"]

TERMS = ("ce", "kd", "at", "flow", "adv")

#: The versions of the recipes: 1, the first (the 15-epoch protocol of ``results/cpu`` ran with it),
#: and 2, the current one, set from the method screen of ``results/method-screen``.
RECIPE_VERSIONS = (1, 2)

#: Options of :class:`~dfkd_lib.train.TrainConfig` that the engine learnt after runs were logged
#: and checkpointed without them, each with the value that does what the engine did before: a
#: config without one is read with it (:func:`dfkd_lib.report.run_options`, and a resumed
#: checkpoint's config). A two-stage run without ``stage1_lr`` is not in here: its stage 1 was
#: inside the epochs, which no value of the option reproduces.
ADDED_LATER: dict[str, Any] = {"flow_norm": "none", "flow_grad_ratio": None, "d_input": "raw", "d_noise": 0.0,
                               "d_r1": 0.0, "d_every": 1, "probe_order": "first"}  # fmt: skip


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        name: what ``--method`` takes.
        label: a short name for tables and plot legends.
        summary: one line for the command line's help.
        terms: the loss terms the student is trained with (see the module docstring).
        recipe: options set on top of the ``TrainConfig`` defaults (flags and files override them).
        first: the first version's recipe, where it differs from ``recipe`` (``None``: the same).
    """

    name: str
    label: str
    summary: str
    terms: tuple[str, ...]
    recipe: dict[str, Any] = field(default_factory=dict)
    first: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.terms) - set(TERMS)
        if unknown or "ce" not in self.terms:
            raise ValueError(f"method {self.name!r}: terms must include 'ce' and come from {TERMS}, got {self.terms}")

    def recipe_of(self, version: int = RECIPE_VERSIONS[-1]) -> dict[str, Any]:
        """The recipe of ``version`` (see :data:`RECIPE_VERSIONS`)."""
        if version not in RECIPE_VERSIONS:
            raise ValueError(f"recipe version must be one of {RECIPE_VERSIONS}, got {version!r}")
        return self.first if version == 1 and self.first is not None else self.recipe

    @property
    def needs_teacher(self) -> bool:
        """Every term but cross-entropy reads the teacher."""
        return any(t != "ce" for t in self.terms)

    @property
    def uses_flow(self) -> bool:
        """Whether the run computes flow matrices (for the flow term or the discriminators)."""
        return "flow" in self.terms or "adv" in self.terms

    @property
    def uses_adv(self) -> bool:
        """Whether the run trains discriminators."""
        return "adv" in self.terms


_KD: dict[str, Any] = {"ce_weight": 0.1, "kd_weight": 0.9, "temperature": 4.0}

# The second version's settings, chosen on the validation split by the method screen
# (scripts/method_screen.sh, results/method-screen/README.md: 8 epochs, 2 seeds, ResNet-26 -> ResNet-8).
# The flow term: every item is the example's error relative to the teacher's matrix (flow_norm
# "teacher"), weighted so that its gradient starts at 0.3 times the supervised gradient (ratios of
# 1, 3 and 10 ended lower on validation).
_FLOW: dict[str, Any] = {"pairs": "dense", "flow_norm": "teacher", "flow_grad_ratio": 0.3}
# The discriminators: each flow matrix over its own norm (they judge shape, not size), spectral
# normalisation, an R1 penalty, one discriminator step every other student step and lambda_adv = 1,
# at which the adversarial term is of the order of the cross-entropy. Of the pilots, the setting whose
# discriminators took longest to win; they still end above 90 % (the screen's README says so).
_ADV: dict[str, Any] = {"lambda_adv": 1.0, "spectral_norm": True, "d_hidden": (64, 32), "d_input": "unit",
                        "d_r1": 1.0, "d_every": 2}  # fmt: skip

# The first version's settings (the 15-epoch protocol of results/cpu ran with them): lambda_flow
# set from the loss value on raw flows; the adversarial settings of the first search
# (scripts/adv_search.sh, results/adv-search), where lambda_adv = 0.1 collapsed the student to chance.
_FLOW_V1: dict[str, Any] = {"pairs": "dense", "lambda_flow": 5e-4}
_ADV_V1: dict[str, Any] = {"lambda_adv": 0.01, "spectral_norm": True, "d_hidden": (64, 32)}

_ALL = [
    Method("scratch", "scratch", "cross-entropy only (also how teachers are trained)", ("ce",)),
    Method("kd", "KD", "Hinton et al.: ce_weight * CE + kd_weight * T^2 KL", ("ce", "kd"), _KD),
    Method("at", "AT", "attention transfer on the stage outputs: CE + at_beta / 2 * AT", ("ce", "at"),
           {"at_beta": 1000.0}),
    Method("fsp", "FSP", "Yim et al.: sparse pairs, a flow-only stage, then the cross-entropy epochs of scratch",
           ("ce", "flow"), {"pairs": "sparse", "two_stage": True, "lambda_flow": 1e-3}),
    Method("dense", "dense flow", "dense flow, L2, joint: CE + lambda_flow * flow", ("ce", "flow"),
           _FLOW, _FLOW_V1),
    Method("adv", "adversarial", "discriminators on the dense flow, no L2: CE + lambda_adv * adv", ("ce", "adv"),
           {"pairs": "dense", **_ADV}, {"pairs": "dense", **_ADV_V1}),
    Method("adv-dense", "adv. dense flow", "the full objective: CE + lambda_flow * flow + lambda_adv * adv",
           ("ce", "flow", "adv"), {**_FLOW, **_ADV}, {**_FLOW_V1, **_ADV_V1}),
    Method("kd-dense", "KD + dense flow", "Hinton KD with dense flow: ce_weight * CE + kd_weight * KD + lambda_flow * flow",
           ("ce", "kd", "flow"), {**_KD, **_FLOW}, {**_KD, **_FLOW_V1}),
    Method("kd-adv-dense", "KD + adv. dense flow", "KD with the full objective: ... + kd_weight * KD + flow + adv",
           ("ce", "kd", "flow", "adv"), {**_KD, **_FLOW, **_ADV}, {**_KD, **_FLOW_V1, **_ADV_V1}),
]  # fmt: skip

#: The methods by name, in the order tables and plots list them.
METHODS: dict[str, Method] = {m.name: m for m in _ALL}

#: What each method sets on top of the ``TrainConfig`` defaults, in the current version (a view of
#: :data:`METHODS`; ``Method.recipe_of(1)`` gives the first version's).
RECIPES: dict[str, dict[str, Any]] = {name: m.recipe for name, m in METHODS.items()}


def get_method(name: str) -> Method:
    """The method called ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]
