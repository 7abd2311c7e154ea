"""dfkd_lib: the companion library of the book on adversarial dense-flow knowledge distillation.

Modules: :mod:`~dfkd_lib.models` (CIFAR ResNets with taps), :mod:`~dfkd_lib.flow` (FSP and dense
flow), :mod:`~dfkd_lib.discriminators`, :mod:`~dfkd_lib.losses`, :mod:`~dfkd_lib.data`,
:mod:`~dfkd_lib.methods` (every method in one place), :mod:`~dfkd_lib.train` (the engine), :mod:`~dfkd_lib.checkpoint`,
:mod:`~dfkd_lib.pretrained`, :mod:`~dfkd_lib.plots`, and for the book :mod:`~dfkd_lib.report`,
:mod:`~dfkd_lib.protocols` and :mod:`~dfkd_lib.book`.
"""

from .checkpoint import load_model, save_model
from .data import get_loaders, load_cifar, make_synthetic
from .discriminators import FlowDiscriminators
from .flow import align_taps, dense_flows, flows_loop, fsp_matrix, make_flow_plan, make_pairs
from .losses import at_loss, discriminator_loss, flow_loss, generator_loss, kd_loss
from .methods import METHODS, RECIPES, Method
from .models import cifar_resnet, count_macs, count_parameters, model_from_name
from .pretrained import load_pretrained, load_student, load_teacher
from .train import TrainConfig, config_for, evaluate, measure_lambda_flow, train

__version__ = "0.1.0"

__all__ = [
    "cifar_resnet", "model_from_name", "count_parameters", "count_macs",
    "fsp_matrix", "align_taps", "make_pairs", "flows_loop", "dense_flows", "make_flow_plan",
    "FlowDiscriminators",
    "kd_loss", "flow_loss", "at_loss", "discriminator_loss", "generator_loss",
    "load_cifar", "get_loaders", "make_synthetic",
    "METHODS", "RECIPES", "Method", "TrainConfig", "config_for", "measure_lambda_flow", "train", "evaluate",
    "save_model", "load_model", "load_pretrained", "load_student", "load_teacher",
]  # fmt: skip
