"""The trainer's typed state and the optimizer-state re-keying between FSDP names and positions."""

import json

import torch

from growlm.training.distributed import Runtime, load_moments_by_name, positional_optimizer_state
from growlm.training.state import TrainState


def test_train_state_round_trips_through_json_and_keeps_what_an_old_checkpoint_lacks():
    state = TrainState(step=7, tokens=896, data_position=28, window_loss_sum=0.1 + 0.2, window_steps=3,
                       bad_steps_total=1, elapsed_s=1.5)
    saved = json.loads(json.dumps(state.state_dict()))
    assert "init_from" not in saved  # only runs started from a model folder name one
    again = TrainState()
    again.load_state_dict(saved)
    assert again == state and again.window_loss_sum == 0.1 + 0.2  # the float survives exactly
    state.init_from = "runs/grown"
    assert state.state_dict()["init_from"] == "runs/grown"
    old = TrainState(elapsed_s=2.0)
    old.load_state_dict({"step": 3, "param_names": ["a"], "seq_len": 32})  # no elapsed_s; other keys ignored
    assert (old.step, old.elapsed_s) == (3, 2.0)
    state.window_loss_sum, state.window_steps = 3.0, 2
    assert state.take_window_loss() == 1.5 and (state.window_loss_sum, state.window_steps) == (0.0, 0)


def test_fsdp_names_are_keyed_by_growlm_position_like_a_plain_state_dict():
    names = ["model.layers.0.q.weight", "model.layers.0.q.lora_A.weight", "model.norm.weight"]
    by_fqn = {  # as get_state_dict gives it: peft's full paths, groups listing names
        "state": {"base_model.model.model.norm.weight": {"exp_avg": torch.ones(2)},
                  "base_model.model.model.layers.0.q.base_layer.weight": {"exp_avg": torch.zeros(2)}},
        "param_groups": [{"lr": 0.1, "params": ["base_model.model.model.layers.0.q.base_layer.weight",
                                                "base_model.model.model.layers.0.q.lora_A.default.weight"]},
                         {"lr": 0.2, "params": ["base_model.model.model.norm.weight"]}],
    }
    plain = positional_optimizer_state(by_fqn, names)
    assert sorted(plain["state"]) == [0, 2] and torch.equal(plain["state"][2]["exp_avg"], torch.ones(2))
    assert plain["param_groups"] == [{"lr": 0.1, "params": [0, 1]}, {"lr": 0.2, "params": [2]}]


def test_moments_by_name_go_where_names_and_shapes_match():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    names = [n for n, _ in model.named_parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.5)
    moments = {"0.weight": {"step": torch.tensor(4.0), "exp_avg": torch.full((4, 3), 0.5),
                            "exp_avg_sq": torch.full((4, 3), 0.25)},
               "1.weight": {"step": torch.tensor(4.0), "exp_avg": torch.zeros(9), "exp_avg_sq": torch.zeros(9)}}
    loaded, skipped = load_moments_by_name(model, optimizer, names, Runtime(), moments, [{"lr": 0.125}])
    assert loaded == ["0.weight"] and skipped == ["0.bias", "1.weight", "1.bias"]
    first = optimizer.state[model[0].weight]
    assert torch.equal(first["exp_avg"], moments["0.weight"]["exp_avg"]) and model[1].weight not in optimizer.state
    assert optimizer.param_groups[0]["lr"] == 0.125
