"""``worldsim bench suites=[train]``: the figures are the training step's, and its FLOPs follow the model's shapes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from worldsim.bench_train import TrainBenchConfig, bench_train, cpu_peak_flops, model_preset

TINY = TrainBenchConfig(autoencoder_batch=2, dynamics_batch=2, clip_length=4, frame_size=32, steps=1, warmup=1)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_presets_are_read_from_the_model_configs() -> None:
    assert model_preset("mid") == {"autoencoder": "tiny", "dynamics": "mid"}
    assert model_preset("base") == {"autoencoder": "small", "dynamics": "base"}
    with pytest.raises(ValueError, match="'huge' is no model preset"):
        model_preset("huge")


def test_each_stage_reports_its_step_and_flops_that_follow_the_shapes() -> None:
    short = {row["stage"]: row for row in bench_train(TINY)}
    assert set(short) == {"autoencoder", "dynamics"}
    for row in short.values():
        assert row["ms_per_step"] > 0 and row["samples_per_s"] == pytest.approx(2e3 / row["ms_per_step"], rel=0.02)
        assert row["tflops_per_s"] == pytest.approx(row["gflops_per_sample"] * row["samples_per_s"] / 1e3, rel=0.05)
        assert row["precision"] == "32-true" and row["mfu"] > 0
    assert short["dynamics"]["tokens_per_s"] == pytest.approx(short["dynamics"]["samples_per_s"] * 4 * 16, rel=0.02)

    long = {row["stage"]: row for row in bench_train(dataclasses.replace(TINY, clip_length=8, stages=["dynamics"]))}
    # Twice the frames: twice the DiT's linear work, more than twice its attention's (quadratic in
    # tokens), the same caption encoding per clip.
    ratio = long["dynamics"]["gflops_per_sample"] / short["dynamics"]["gflops_per_sample"]
    assert 1.5 < ratio < 4.0
    # 2x2 latent patches (the quickstart's DiT): a quarter of the tokens, far fewer FLOPs per clip.
    patched = bench_train(dataclasses.replace(TINY, stages=["dynamics"], dit={"patch_size": 2}))[0]
    assert patched["dit_overrides"] == {"patch_size": 2}
    assert patched["tokens_per_s"] == pytest.approx(patched["samples_per_s"] * 4 * 4, rel=0.02)
    assert patched["gflops_per_sample"] < 0.6 * short["dynamics"]["gflops_per_sample"]
    wider = bench_train(dataclasses.replace(TINY, frame_size=64, stages=["autoencoder"]))[0]
    assert wider["gflops_per_sample"] == pytest.approx(4 * short["autoencoder"]["gflops_per_sample"], rel=0.01)


def test_the_cpu_peak_is_an_estimate_that_says_how_it_was_made() -> None:
    peak, source = cpu_peak_flops()
    assert peak > 1e9 and source.startswith("estimate:") and "FLOPs/cycle" in source


def test_a_memory_models_step_grows_linearly_with_its_clip() -> None:
    """Each frame attends to its window and bank only (SeenFrames), so twice the clip is twice the work."""
    memory = {"slots": 2, "window": 3}
    rows = [
        bench_train(dataclasses.replace(TINY, stages=["dynamics"], clip_length=T, memory=memory))[0] for T in (16, 32)
    ]
    assert rows[0]["memory"] == memory
    ratio = rows[1]["gflops_per_sample"] / rows[0]["gflops_per_sample"]
    assert 1.8 < ratio < 2.05, ratio
