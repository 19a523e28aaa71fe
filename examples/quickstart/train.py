"""A toy training loop that uses the whole trial API.

It "trains" for ``steps`` steps (a decaying loss that depends on lr and depth),
reports ``val_loss`` every step, and halfway through its first attempt saves a
checkpoint and exits for resume -- as it would when the cluster's time limit
approaches. The second attempt picks up from the checkpoint. Run it by hand
(``python train.py``) and it still works: the trial API falls back to a no-op mode.
"""

import json
import math
import os
import time

from clusterd import trial

params = trial.params()
lr = float(params.get("lr", 0.01))
depth = int(params.get("depth", 2))
steps = int(params.get("steps", 20))

state = {"step": 0}
checkpoint = trial.last_checkpoint()
if checkpoint is not None:
    with open(checkpoint.path) as fh:
        state = json.load(fh)
    print(f"resuming from step {state['step']} (attempt {trial.attempt()})")


def save(step: int) -> None:
    path = os.path.join(trial.checkpoint_dir(), f"step-{step}.json")
    with open(path, "w") as fh:
        json.dump({"step": step}, fh)
    trial.checkpoint(path, step)


for step in range(state["step"], steps):
    time.sleep(0.05)  # the "work" of one step
    loss = 1.0 / (1 + step * lr * 10) + abs(math.log10(lr) + 2) * 0.1 + 0.05 / depth
    trial.report(step, val_loss=loss)
    print(f"step {step}: val_loss={loss:.4f}")
    if trial.should_stop():
        break
    first_attempt_halfway = checkpoint is None and step + 1 == steps // 2
    if first_attempt_halfway or trial.time_to_checkpoint():
        save(step + 1)
        trial.exit_for_resume()
