"""BlockWorld's inverse-dynamics model: its labels, the shipped file's accuracy on held-out truth,
the file's round trip through the checkpoint door, and its training stage."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch

import worldsim
from worldsim.checkpoint import (
    CheckpointError,
    export_checkpoint,
    load_checkpoint,
    load_inverse_dynamics,
    worldsim_record,
)
from worldsim.data.collect import CollectConfig, collect
from worldsim.envs.blockworld import BlockWorldEnv, act
from worldsim.models.inverse_dynamics import (
    COMPONENTS,
    GROUPS,
    InverseDynamicsConfig,
    InverseDynamicsModel,
    effective_actions,
    group_accuracy,
)
from worldsim.training.harness import TrainerConfig
from worldsim.training.idm_module import heldout_transitions
from worldsim.training.train import TrainConfig, train

#: The shipped IDM's accuracy per group on the held-out episodes below (4 sticky-policy episodes of
#: 150 steps, seed 7), measured, less a margin: id 0.41 move, 0.72 camera, 0.12 jump, 0.35 use;
#: ood 0.19, 0.57, 0.10, 0.19.
FLOORS = {
    "id": {"move": 0.38, "camera": 0.68, "jump": 0.09, "use": 0.3},
    "ood": {"move": 0.15, "camera": 0.53, "jump": 0.06, "use": 0.15},
}


def labels_of(actions: list[np.ndarray], seed: int = 0) -> np.ndarray:
    env = BlockWorldEnv(width=32, height=32)
    observation, info = env.reset(seed=seed)
    frames, states = [observation], [info["state"]]
    for action in actions:
        observation, _, _, _, info = env.step(action)
        frames.append(observation)
        states.append(info["state"])
    return effective_actions({key: np.stack([s[key] for s in states]) for key in states[0]}, np.stack(frames))


def column(name: str) -> int:
    return COMPONENTS.index(name)


def test_effective_actions_are_what_the_ground_truth_did_not_what_was_pressed() -> None:
    turns = [act(yaw=1), act(yaw=2), act(pitch=1)] + [act(pitch=2)] * 7
    labels = labels_of(turns)
    assert labels[:, column("yaw")].tolist() == [1, 2] + [0] * 8
    # Pitch starts level: one up, then down to the -75 degree limit (5 steps), where pressing does nothing.
    assert labels[:, column("pitch")].tolist() == [0, 0, 1, 2, 2, 2, 2, 2, 2, 0]
    # A jump from the ground rises; pressed again in the air it does nothing. Looking down, a break edits.
    actions = [act(jump=1), act(jump=1)] + [act()] * 12 + [act(pitch=2)] * 5 + [act(use=1)]
    labels = labels_of(actions)
    assert labels[:, column("jump")].tolist() == [1] + [0] * (len(actions) - 1)
    assert labels[:, column("use")].tolist() == [0] * (len(actions) - 1) + [1]
    # Nothing was pressed that moved the player: no move, no strafe anywhere.
    assert not labels[:, [column("move"), column("strafe")]].any()


def test_a_pair_of_identical_frames_shows_no_action_whatever_the_state_says() -> None:
    env = BlockWorldEnv(width=32, height=32)
    frame, info = env.reset(seed=0)
    _, _, _, _, turned = env.step(act(yaw=1, pitch=1))
    state = {key: np.stack([info["state"][key], turned["state"][key]]) for key in info["state"]}
    assert effective_actions(state, np.stack([frame, frame + 1])).tolist() == [[0, 0, 0, 1, 1, 0]]
    assert not effective_actions(state, np.stack([frame, frame])).any()


def test_a_walk_reads_as_its_direction_in_the_players_frame() -> None:
    labels = labels_of([act(move=1), act(move=2), act(strafe=1), act(strafe=2)], seed=3)
    moved = labels[:, [column("move"), column("strafe")]]
    # Each step is either the pressed direction or, against a block, nothing.
    for row, pressed in zip(moved, ([1, 0], [2, 0], [0, 1], [0, 2])):
        assert row.tolist() in (pressed, [0, 0])
    assert moved.any()


def test_group_accuracy_skips_steps_where_nothing_happened_and_nothing_was_read() -> None:
    labels = np.zeros((4, len(COMPONENTS)), np.int64)
    labels[0, column("yaw")] = 1
    labels[1, column("move")] = 1
    read = labels.copy()
    read[1, column("strafe")] = 2  # move read, but a strafe too: the move group is wrong there
    read[2, column("jump")] = 1  # a jump read where none happened
    accuracy = group_accuracy(read, labels)
    assert accuracy["camera"] == 1.0 and accuracy["move"] == 0.0 and accuracy["jump"] == 0.0
    assert np.isnan(accuracy["use"])  # never used, never read
    assert group_accuracy(np.zeros_like(labels), labels)["camera"] == 0.0  # copy-last reads nothing


@pytest.mark.parametrize("split", ["id", "ood"])
def test_shipped_idm_reads_held_out_truth_above_its_measured_floor(split: str) -> None:
    model = load_inverse_dynamics(worldsim.reference_idm())
    before, after, labels = heldout_transitions(split, episodes=4, steps=150, seed=7)
    accuracy = group_accuracy(model.read(before, after), labels)
    for group, floor in FLOORS[split].items():
        assert accuracy[group] >= floor, (group, accuracy)
    # Identical frames (what copy-last predicts) read as no action, bar a few moves (1.7% of these id pairs).
    assert model.read(before, before).any(1).mean() <= 0.03


def test_shipped_idm_is_a_small_float16_file_that_records_its_accuracy() -> None:
    path = worldsim.reference_idm("worldsim/BlockWorld-v0")
    assert path.stat().st_size < 1_000_000
    checkpoint = load_checkpoint(path)
    weights = checkpoint["weights"]["idm"]
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    record = checkpoint["worldsim"]
    assert record["stage"] == "idm" and record["data"]["env_id"] == "worldsim/BlockWorld-v0"
    for split in ("id", "ood"):
        assert set(GROUPS) <= set(record["accuracy"][split])
        assert record["accuracy"][split]["camera"] > 0.5  # 0.65 id, 0.56 ood when it shipped
    assert "blockworld_idm" not in worldsim.reference_worlds()
    with pytest.raises(FileNotFoundError, match="no reference model"):
        worldsim.reference_checkpoint("blockworld_idm")


def write_idm(tmp_path: Path, config: InverseDynamicsConfig) -> tuple[Path, InverseDynamicsModel]:
    model = InverseDynamicsModel(config)
    record = worldsim_record("idm", {"idm": config}, {"env_id": "worldsim/BlockWorld-v0"}, {"idm": "idm."})
    state = {f"idm.{k}": v for k, v in model.state_dict().items()}
    torch.save({"worldsim": record, "state_dict": state}, tmp_path / "idm.ckpt")
    return export_checkpoint(tmp_path / "idm.ckpt", tmp_path / "idm.pt", dtype="float16"), model


def test_idm_file_round_trips_weights_only_and_refuses_a_tampered_one(tmp_path: Path) -> None:
    path, model = write_idm(tmp_path, InverseDynamicsConfig(channels=(8, 8, 8, 8), hidden=16))
    loaded = load_inverse_dynamics(path)
    frames = torch.randint(0, 256, (2, 4, 3, 64, 64), dtype=torch.uint8)
    for ours, theirs in zip(model.eval()(frames[0], frames[1]), loaded(frames[0], frames[1])):
        torch.testing.assert_close(ours, theirs, atol=2e-2, rtol=2e-2)  # float16 weights

    checkpoint = torch.load(path, weights_only=True)
    next(iter(checkpoint["weights"]["idm"].values())).view(-1)[0] += 1  # a changed byte
    torch.save(checkpoint, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="differ from the sha256"):
        load_inverse_dynamics(tmp_path / "tampered.pt")

    buffer = io.BytesIO()
    torch.save({"worldsim": {"schema": 1}, "weights": {"idm": {}}, "code": Path("x")}, buffer)
    (tmp_path / "pickled.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match="pickled objects"):
        load_inverse_dynamics(tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="no inverse-dynamics model"):
        load_inverse_dynamics(worldsim.reference_checkpoint("orbit"))


@pytest.mark.slow
def test_training_a_tiny_idm_lowers_its_loss_and_records_its_accuracy(tmp_path: Path) -> None:
    data = tmp_path / "data"
    collect(
        CollectConfig(
            env="worldsim/BlockWorld-v0", policy="random", episodes=2, max_steps=24, out=str(data), progress=False
        )
    )
    cfg = TrainConfig(
        stage="idm",
        data=str(data),
        out=str(tmp_path / "run"),
        trainer=TrainerConfig(
            accelerator="cpu", devices="1", max_steps=24, log_every_n_steps=1, val_every_n_steps=24, progress_bar=False
        ),
    )
    cfg.idm.batch_size, cfg.idm.val_pairs, cfg.idm.heldout_episodes, cfg.idm.heldout_steps = 8, 16, 1, 8
    cfg.optim.lr, cfg.optim.warmup_steps = 2e-3, 5
    exported = train(cfg)["idm"]
    rows = list(csv.DictReader(open(next((tmp_path / "run" / "idm" / "csv").rglob("metrics.csv")))))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    record = load_checkpoint(exported)["worldsim"]
    assert record["stage"] == "idm" and set(record["accuracy"]) == {"id", "ood"}
    assert record["accuracy"]["id"]["transitions"] == 8 and record["train_seconds"] > 0
    load_inverse_dynamics(exported)
