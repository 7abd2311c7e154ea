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

__all__ = ["TERMS", "Method", "METHODS", "RECIPES", "get_method"]

TERMS = ("ce", "kd", "at", "flow", "adv")


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        name: what ``--method`` takes.
        label: a short name for tables and plot legends.
        summary: one line for the command line's help.
        terms: the loss terms the student is trained with (see the module docstring).
        recipe: options set on top of the ``TrainConfig`` defaults (flags and files override them).
    """

    name: str
    label: str
    summary: str
    terms: tuple[str, ...]
    recipe: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.terms) - set(TERMS)
        if unknown or "ce" not in self.terms:
            raise ValueError(f"method {self.name!r}: terms must include 'ce' and come from {TERMS}, got {self.terms}")

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


# The adversarial settings chosen on the validation split by the first search (scripts/adv_search.sh,
# results/adv-search): lambda_adv = 0.1, which makes the term start at order one, made the student
# collapse to chance accuracy; of the settings tried, lambda_adv = 0.01 with spectral normalisation
# and 64 x 32 hidden units ended highest on validation.
_ADV: dict[str, Any] = {"lambda_adv": 0.01, "spectral_norm": True, "d_hidden": (64, 32)}
_KD: dict[str, Any] = {"ce_weight": 0.1, "kd_weight": 0.9, "temperature": 4.0}

_ALL = [
    Method("scratch", "scratch", "cross-entropy only (also how teachers are trained)", ("ce",)),
    Method("kd", "KD", "Hinton et al.: ce_weight * CE + kd_weight * T^2 KL", ("ce", "kd"), _KD),
    Method("at", "AT", "attention transfer on the stage outputs: CE + at_beta / 2 * AT", ("ce", "at"),
           {"at_beta": 1000.0}),
    Method("fsp", "FSP", "Yim et al.: sparse pairs, a flow-only stage, then the cross-entropy epochs of scratch",
           ("ce", "flow"), {"pairs": "sparse", "two_stage": True, "lambda_flow": 1e-3}),
    Method("dense", "dense flow", "dense flow, L2, joint: CE + lambda_flow * flow", ("ce", "flow"),
           {"pairs": "dense", "lambda_flow": 5e-4}),
    Method("adv", "adversarial", "discriminators on the dense flow, no L2: CE + lambda_adv * adv", ("ce", "adv"),
           {"pairs": "dense", **_ADV}),
    Method("adv-dense", "adv. dense flow", "the full objective: CE + lambda_flow * flow + lambda_adv * adv",
           ("ce", "flow", "adv"), {"pairs": "dense", "lambda_flow": 5e-4, **_ADV}),
    Method("kd-dense", "KD + dense flow", "Hinton KD with dense flow: ce_weight * CE + kd_weight * KD + lambda_flow * flow",
           ("ce", "kd", "flow"), {**_KD, "pairs": "dense", "lambda_flow": 5e-4}),
    Method("kd-adv-dense", "KD + adv. dense flow", "KD with the full objective: ... + kd_weight * KD + flow + adv",
           ("ce", "kd", "flow", "adv"), {**_KD, "pairs": "dense", "lambda_flow": 5e-4, **_ADV}),
]  # fmt: skip

#: The methods by name, in the order tables and plots list them.
METHODS: dict[str, Method] = {m.name: m for m in _ALL}

#: What each method sets on top of the ``TrainConfig`` defaults (a view of :data:`METHODS`).
RECIPES: dict[str, dict[str, Any]] = {name: m.recipe for name, m in METHODS.items()}


def get_method(name: str) -> Method:
    """The method called ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]
