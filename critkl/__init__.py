"""critkl: the prioritized KL penalty on critical tokens (Vassoyan, Beau, Plaud, 2025), reproduced small.

Modules follow the pipeline: ``task`` (problems, scratchpad, parsing) -> ``tokenizer`` -> ``model`` ->
``pretrain`` -> ``sampling``/``rollout`` -> ``losses`` -> ``rl``; ``critical`` locates and measures the
critical tokens, ``plots`` draws them.
"""
from .config import PretrainConfig, RLConfig, pretrain_config, rl_config
from .pretrain import pretrain, load_pretrained
from .rl import finetune, load_run

__all__ = ["PretrainConfig", "RLConfig", "pretrain_config", "rl_config", "pretrain", "load_pretrained",
           "finetune", "load_run"]
__version__ = "0.1.0"
