"""The per-model torch loop: the plain reference that the engine's networks are tested and timed
against (logreg's is scikit-learn, `utility.SklearnUtility`).

Each submodel is one nn.Module trained alone, as a user would write it: `steps` steps of the same
optimiser from the same initialisation (`Engine.new_model(key)`), on the same minibatches (the
positions `randomness.draw_positions` draws from its key, into its coalition in index order), so the
engine and this loop agree up to float rounding (the engine sums the same per-model losses, in
another order). Bool masks only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .engine import Engine
from .randomness import draw_positions, mask_keys


def loop_fit_predict(engine: Engine, masks: np.ndarray, x_eval: np.ndarray) -> np.ndarray:
    """Class probabilities (B, m, K) on `x_eval`, one network per bool mask, trained one by one."""
    if engine.convex:
        raise ValueError("the torch loop trains networks; logreg's reference is scikit-learn")
    masks = np.asarray(masks, dtype=bool)
    spec, device = engine.spec, engine.device
    x_eval = torch.as_tensor(np.asarray(x_eval, np.float32).reshape(-1, *engine.input_shape))
    x_eval = x_eval.to(device, engine.dtype)
    out = np.empty((len(masks), len(x_eval), engine.n_classes))
    for b, (mask, key) in enumerate(zip(masks, mask_keys(masks, engine.seed), strict=True)):
        model = engine.new_model(int(key)).to(device)
        if spec.optimizer == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                                  weight_decay=spec.weight_decay)  # fmt: skip
        members = torch.as_tensor(np.flatnonzero(mask), device=device)
        keys = torch.tensor([int(key)], device=device)
        size = torch.tensor([len(members)], device=device)
        for step in range(int(spec.steps)):
            idx = members[draw_positions(keys, step, int(spec.batch_size), size)[0]]
            loss = F.cross_entropy(model(engine.x[idx]).float(), engine.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = torch.cat([model(xb) for xb in x_eval.split(int(spec.batch_size))])
        out[b] = torch.softmax(logits.float(), -1).double().cpu().numpy()
    return out
