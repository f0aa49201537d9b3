"""The env bench's step-cost figure: medians over the steps just before each frame."""

from worldsim.bench_env import _step_ms_at


def test_step_cost_is_the_median_of_the_steps_up_to_each_frame_the_run_reached() -> None:
    seconds = [0.001] * 16 + [0.002] * 584 + [0.010] * 400  # 1,000 steps, slower after frame 600
    seconds[3] = 1.0  # one stall among the first 16 steps moves no median
    assert _step_ms_at(seconds, (16, 600, 1000, 5000)) == {"16": 1.0, "600": 2.0, "1000": 10.0}
    assert _step_ms_at(seconds[:10], (16,)) == {}
