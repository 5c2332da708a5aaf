"""A small training run shared by the loop-level tests of this folder."""
import pytest


@pytest.fixture(scope="session")
def accumulating_run(smoke_config, tmp_path_factory):
    """(config, workdir, result): 2 epochs of 2 steps, each one update of 2 micro-batches
    of 2 images (accumulate_steps 2), with an EMA of the weights."""
    from research import train as train_lib

    config = smoke_config.replace(accumulate_steps=2, ema_decay=0.5, steps_per_epoch=None,
                                  checkpoint_every_steps=100)
    workdir = str(tmp_path_factory.mktemp("accumulate") / "straight")
    return config, workdir, train_lib.train_and_evaluate(config, workdir)


@pytest.fixture(scope="session")
def accumulating_run_dir(accumulating_run):
    return accumulating_run[1]
