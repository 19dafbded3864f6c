"""ALBERT's optimizer: LAMB as google-research/albert's lamb_optimizer.py applies it, and its schedule.

LAMB (You et al., 2019) as ALBERT used it differs from other LAMBs (keras-hub's, optax's) in
three ways that change the trajectory: no bias correction of the moments; weight decay added to
the Adam update *before* the trust ratio; and parameters whose names contain "layer_norm" or
"bias" (LayerNorm scales/offsets, every bias) get neither weight decay nor the trust ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

#: Name fragments of variables excluded from weight decay and from layer adaptation, as ALBERT
#: passes `exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"]` (its TF names).
DEFAULT_EXCLUDE = ("layer_norm", "bias", "LayerNorm")


@keras.saving.register_keras_serializable(package="albert_keras")
class Lamb(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Moments, ALBERT's variant.

    For each variable w with gradient g (no bias correction):
        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        u <- m / (sqrt(v) + eps) [+ weight_decay_rate * w   unless excluded]
        r <- ||w|| / ||u|| if both norms > 0 else 1      [1 if excluded]
        w <- w - lr * r * u
    """

    def __init__(
        self,
        learning_rate=1e-3,
        weight_decay_rate: float = 0.01,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-6,
        exclude_from_weight_decay: Sequence[str] = DEFAULT_EXCLUDE,
        exclude_from_layer_adaptation: Sequence[str] | None = None,
        name: str = "lamb",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.weight_decay_rate = weight_decay_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.exclude_from_weight_decay_names = tuple(exclude_from_weight_decay)
        # As in google-research: layer adaptation excludes what weight decay excludes unless told.
        self.exclude_from_layer_adaptation_names = tuple(
            exclude_from_weight_decay
            if exclude_from_layer_adaptation is None
            else exclude_from_layer_adaptation
        )

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        # Decided once from the Keras variable paths: update_step may see backend variables.
        self._decays = [self.decays(v) for v in var_list]
        self._adapts = [self.adapts(v) for v in var_list]

    @staticmethod
    def _matches(variable, fragments) -> bool:
        name = variable.path
        return any(fragment in name for fragment in fragments)

    def decays(self, variable) -> bool:
        return self.weight_decay_rate > 0 and not self._matches(
            variable, self.exclude_from_weight_decay_names
        )

    def adapts(self, variable) -> bool:
        return not self._matches(variable, self.exclude_from_layer_adaptation_names)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]

        # m += (1 - b1)(g - m) is b1 m + (1 - b1) g; written with ops so that TF's IndexedSlices
        # (embedding gradients) turn dense here and every row's moments decay, as in google's code.
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1.0 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1.0 - self.beta_2))
        update = m / (ops.sqrt(v) + self.epsilon)
        if self._decays[index]:
            update = update + self.weight_decay_rate * variable
        if self._adapts[index]:
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            u_norm = ops.sqrt(ops.sum(ops.square(update)))
            safe_u_norm = ops.where(u_norm > 0, u_norm, 1.0)
            ratio = ops.where(ops.logical_and(w_norm > 0, u_norm > 0), w_norm / safe_u_norm, 1.0)
            update = ratio * update
        self.assign_sub(variable, lr * update)

    def get_config(self):
        config = super().get_config()
        config.update(
            weight_decay_rate=self.weight_decay_rate,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            exclude_from_weight_decay=list(self.exclude_from_weight_decay_names),
            exclude_from_layer_adaptation=list(self.exclude_from_layer_adaptation_names),
        )
        return config


@keras.saving.register_keras_serializable(package="albert_keras")
class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """ALBERT's schedule: polynomial decay from `peak` to `end` over `total_steps`, with the
    first `warmup_steps` replaced by a linear ramp `peak * step / warmup_steps`.

    As in google-research/albert's optimization.py, the decay counts from step 0, not from the
    end of warmup. With `decay_from_warmup` it counts from the end of warmup instead (the linear
    warmup then linear decay of BERT fine-tuning): the rate reaches `peak` at `warmup_steps`, then
    falls to `end` at `total_steps`, with no jump between the two.
    """

    def __init__(
        self,
        peak_learning_rate: float,
        total_steps: int,
        warmup_steps: int = 0,
        end_learning_rate: float = 0.0,
        power: float = 1.0,
        decay_from_warmup: bool = False,
    ):
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                "need 0 <= warmup_steps <= total_steps and total_steps >= 1, received "
                f"warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        self.peak_learning_rate = peak_learning_rate
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.decay_from_warmup = decay_from_warmup

    def __call__(self, step):
        step = ops.cast(step, "float32")
        start = self.warmup_steps if self.decay_from_warmup else 0
        span = max(self.total_steps - start, 1)
        progress = ops.clip((step - start) / span, 0.0, 1.0)
        decayed = (self.peak_learning_rate - self.end_learning_rate) * ops.power(
            1.0 - progress, self.power
        ) + self.end_learning_rate
        if self.warmup_steps == 0:
            return decayed
        warmup = self.peak_learning_rate * step / self.warmup_steps
        return ops.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return dict(
            peak_learning_rate=self.peak_learning_rate,
            total_steps=self.total_steps,
            warmup_steps=self.warmup_steps,
            end_learning_rate=self.end_learning_rate,
            power=self.power,
            decay_from_warmup=self.decay_from_warmup,
        )
