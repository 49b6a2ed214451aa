import os

import pytest
import torch

# CRITKL_TORCH_THREADS (as `critkl sweep` sets it) lets the suite run beside other work without oversubscribing
torch.set_num_threads(int(os.environ.get("CRITKL_TORCH_THREADS") or max(1, min(2, os.cpu_count() or 1))))


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """Every test gets its own empty critkl cache and an empty model store (tests of the shipped store
    point CRITKL_MODELS back at it)."""
    monkeypatch.setenv("CRITKL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRITKL_MODELS", str(tmp_path / "no-models"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A real (tiny, 20-step) pre-trained checkpoint, shared by the tests that need one."""
    from critkl.pretrain import pretrain
    home = tmp_path_factory.mktemp("shared_home")
    return pretrain(preset="tiny", level=2, home=home, progress=False)


@pytest.fixture(scope="session")
def slurm_cluster():
    """``SLURM_CONF`` of a real one-node SLURM cluster on this machine (tests/slurm_cluster.py: installed and
    started when missing, reused when up). Skipped only where it cannot be had (not root, no apt-get), and
    never in CI (``CI=true``): there the SLURM tests must run, so a missing cluster fails them."""
    import slurm_cluster
    try:
        return slurm_cluster.ensure_cluster()
    except slurm_cluster.Unavailable as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI runs the SLURM tests on a real cluster, but none can be started: {e}")
        pytest.skip(f"no SLURM cluster: {e}")
