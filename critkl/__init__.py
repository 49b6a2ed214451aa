"""critkl: the prioritized KL penalty on critical tokens (Vassoyan, Beau, Plaud, 2025), reproduced small.

Modules follow the pipeline: ``task`` (problems, scratchpad, parsing) -> ``tokenizer`` -> ``model`` ->
``pretrain`` -> ``sampling``/``rollout`` -> ``losses`` -> ``rl``; ``critical`` locates the critical tokens,
``measure`` measures a model at them, ``analysis`` holds the statistics over seeds, ``plots`` draws.
"""
import os as _os

if _os.environ.get("CRITKL_TORCH_THREADS"):  # set by `critkl sweep` so that jobs x threads <= cores
    import torch as _torch
    _torch.set_num_threads(max(1, int(_os.environ["CRITKL_TORCH_THREADS"])))

from .config import PretrainConfig, RLConfig, pretrain_config, rl_config
from .pretrain import pretrain, load_pretrained
from .rl import finetune, load_run

__all__ = ["PretrainConfig", "RLConfig", "pretrain_config", "rl_config", "pretrain", "load_pretrained",
           "finetune", "load_run", "check_version"]
__version__ = "0.2.0"


def check_version(version: str, task_format: int) -> str:
    """Stop a chapter written for another critkl version or scratchpad format. Chapters call it with both
    values written in their source, so that the book's execution cache (which hashes code cells only)
    re-executes a chapter whenever they are updated for a new package version."""
    from .task import FORMAT_VERSION
    if version != __version__ or task_format != FORMAT_VERSION:
        raise RuntimeError(f"this chapter was written for critkl {version} (task format {task_format}); installed: "
                           f"critkl {__version__} (task format {FORMAT_VERSION}): update the check_version call "
                           "after checking the chapter")
    return f"critkl {__version__}, task format {FORMAT_VERSION}"
