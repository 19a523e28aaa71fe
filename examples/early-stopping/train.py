"""A toy learning curve that listens to the daemon's early-stopping decisions.

The validation loss decays towards a floor that depends on ``lr`` (best near 3e-3)
and ``width``; bad settings are visibly bad after a few steps, which is what
early stopping exploits. Each step reports ``val_loss`` and asks
``trial.should_stop()``: once the daemon has stopped the trial, it returns at once
(the daemon would terminate it after the grace period anyway).
"""

import math
import time

from clusterd import trial

params = trial.params()
lr = float(params.get("lr", 3e-3))
width = int(params.get("width", 128))
steps = int(params.get("steps", 24))

floor = 0.1 + 0.08 * (math.log10(lr) + 2.5) ** 2 + 0.02 * abs(math.log2(width / 128))
for step in range(1, steps + 1):
    time.sleep(0.05)  # the "work" of one step
    loss = floor + (1.0 - floor) * math.exp(-0.25 * step)
    trial.report(step, val_loss=loss)
    if trial.should_stop():
        print(f"stopped early at step {step} (val_loss={loss:.4f})")
        break
else:
    print(f"finished: val_loss={loss:.4f}")
