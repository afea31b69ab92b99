"""The README's main job until the model zoo lands: a short training run of the fused LSTM on a
generated next-step prediction task, printing the loss as it falls.

The task: binary "piano rolls" (16 notes) made of randomly chosen chords, each held for a random
number of steps; the network predicts the next frame (sigmoid outputs, binary cross-entropy), as
in the noise study's polyphonic-music setup (Sec. 10.2) on a toy scale.
"""

import argparse

import keras
import numpy as np

from keras_rnnreg import layers


def make_rolls(n, length=40, notes=16, seed=0):
    rng = np.random.default_rng(seed)
    chords = (rng.random((6, notes)) < 0.25).astype("float32")
    rolls = np.zeros((n, length + 1, notes), dtype="float32")
    for i in range(n):
        t = 0
        while t <= length:
            hold = int(rng.integers(2, 5))
            rolls[i, t : t + hold] = chords[rng.integers(len(chords))]
            t += hold
    return rolls[:, :-1], rolls[:, 1:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    x, y = make_rolls(512, seed=args.seed)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            layers.LSTM(64, return_sequences=True),
            keras.layers.Dense(x.shape[-1], activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.RMSprop(3e-3), loss="binary_crossentropy")
    print(f"backend: {keras.backend.backend()}; training keras_rnnreg.layers.LSTM on {len(x)} "
          "generated piano-roll sequences")
    history = model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=2)
    losses = history.history["loss"]
    print(f"loss: {losses[0]:.4f} -> {losses[-1]:.4f}")
    return 0 if losses[-1] < losses[0] else 1


if __name__ == "__main__":
    raise SystemExit(main())
