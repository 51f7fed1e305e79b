"""A small numpy policy for the RL mapper: MLP -> masked softmax over a discrete action set.

    logits = W2 tanh(W1 x + b1) + b2,   pi(a | x) = softmax(logits over allowed a)

`grad` returns the gradient of  sum_t w_t log pi(a_t | x_t) + entropy * H(pi(. | x_t)),  so
REINFORCE passes advantages as w_t and imitation passes ones; `backward` also returns its
gradient with respect to the states x_t (the GNN mapper trains its graph encoder through it).
Adam does the ascent step. Plain numpy on purpose: the mapping package must not import torch.
"""
from __future__ import annotations

import numpy as np


class MaskedPolicy:
    """Batched MLP policy with action masks."""

    def __init__(self, n_features: int, n_actions: int, hidden: int,
                 rng: np.random.Generator, lr: float = 0.01):
        # Small output weights: the first policy is close to uniform over the allowed actions.
        self.params = {
            "W1": rng.normal(0.0, 1.0 / np.sqrt(n_features), (n_features, hidden)),
            "b1": np.zeros(hidden),
            "W2": rng.normal(0.0, 0.01, (hidden, n_actions)),
            "b2": np.zeros(n_actions),
        }
        self.lr = lr
        self._adam = Adam(self.params)

    def _forward(self, X: np.ndarray, mask: np.ndarray) -> tuple:
        p = self.params
        H = np.tanh(X @ p["W1"] + p["b1"])
        Z = H @ p["W2"] + p["b2"]
        Z = np.where(mask, Z, -np.inf)
        Z = Z - Z.max(axis=1, keepdims=True)
        E = np.exp(Z)
        return H, E / E.sum(axis=1, keepdims=True)

    def probs(self, X: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, A) action probabilities; zero where mask is False. Every row needs one True."""
        return self._forward(X, mask)[1]

    def sample(self, X: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        P = self.probs(X, mask)
        c = np.cumsum(P, axis=1)
        u = rng.random(len(P)) * c[:, -1]
        a = np.argmax(c > u[:, None], axis=1)
        # Rounding can land on a zero-probability slot at a tie; step to an allowed one.
        bad = ~mask[np.arange(len(a)), a]
        if bad.any():
            a[bad] = np.argmax(P[bad], axis=1)
        return a

    def grad(self, X, mask, actions, weights, entropy: float = 0.0) -> dict:
        """Gradient (ascent direction) of sum_t w_t log pi(a_t|x_t) + entropy * sum_t H_t."""
        return self.backward(X, mask, actions, weights, entropy)[0]

    def backward(self, X, mask, actions, weights, entropy: float = 0.0) -> tuple:
        """(parameter gradients as `grad`, gradient of the same objective w.r.t. X)."""
        p = self.params
        H, P = self._forward(X, mask)
        n = len(actions)
        dZ = -P * weights[:, None]
        dZ[np.arange(n), actions] += weights
        if entropy:
            logP = np.log(np.where(mask, P, 1.0))
            ent = -(P * logP).sum(axis=1, keepdims=True)
            dZ += entropy * (-P * (logP + ent))
        dZ = np.where(mask, dZ, 0.0)
        dpre = (dZ @ p["W2"].T) * (1.0 - H ** 2)
        grads = {"W2": H.T @ dZ, "b2": dZ.sum(axis=0), "W1": X.T @ dpre,
                 "b1": dpre.sum(axis=0)}
        return grads, dpre @ p["W1"].T

    def ascend(self, grads: dict, scale: float = 1.0, beta1=0.9, beta2=0.999, eps=1e-8) -> None:
        """One Adam step uphill along grads * scale."""
        self._adam.step(grads, self.lr, scale, beta1, beta2, eps)


class Adam:
    """Adam state for a dict of numpy parameters, updated in place (ascent)."""

    def __init__(self, params: dict):
        self.params = params
        self._m = {k: np.zeros_like(v) for k, v in params.items()}
        self._v = {k: np.zeros_like(v) for k, v in params.items()}
        self._t = 0

    def step(self, grads: dict, lr: float, scale: float = 1.0, beta1=0.9, beta2=0.999,
             eps=1e-8) -> None:
        """One step uphill along grads * scale."""
        self._t += 1
        for k, g in grads.items():
            g = g * scale
            self._m[k] = beta1 * self._m[k] + (1 - beta1) * g
            self._v[k] = beta2 * self._v[k] + (1 - beta2) * g * g
            mh = self._m[k] / (1 - beta1 ** self._t)
            vh = self._v[k] / (1 - beta2 ** self._t)
            self.params[k] += lr * mh / (np.sqrt(vh) + eps)
