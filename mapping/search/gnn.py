"""GNNMapper: the RL mapper with a graph-neural-network state (AGMC / GNN-RL, Yu et al.).

After "Auto Graph Encoder-Decoder for Neural Network Pruning" (AGMC, ICCV 2021) and "GNN-RL
Compression: Topology-Aware Network Pruning using Multi-stage Graph Embedding and
Reinforcement Learning" (2021): the network is a graph, a graph neural network embeds it, and
the agent acts on the embedding instead of hand-made per-layer features.

Here the graph is the problem's layers with their data-flow edges (graph_embed.py: residual
adds as skip edges, concats, depthwise -> pointwise; the sequential chain when the specs do not
know their inputs), node features are the layer's shape, FLOPs / params / dense latency share
and its measured candidates (best allowed speedup overall and at a few sparsities), and a
2-round mean-aggregation encoder (graph_embed.GraphEncoder) gives per-node embeddings h_i and a
mean-pooled graph embedding g. The state at step t is [h_t, g, the RL mapper's budget state]
(h_t with the node's own features x_t concatenated, jumping-knowledge style, unless
skip=False: on the 12 brute-forced small problems x 4 seeds of tests/mapping it reached the
optimum in 43 of 48 runs against 40 without) and the masked-softmax policy (policy.py) picks
one of the layer's allowed candidates; encoder and policy are trained together, end to end,
by the RL mapper's REINFORCE (gradients through the encoder by hand,
graph_embed.GraphEncoder.backward). Everything else is RLMapper's: the
reward, action clipping, the rule / uniform / dense seeds as incumbent, restarts of a converged
agent (a fresh encoder too), ranking by Problem.rank, `episodes` / `time_budget` caps.

Differences from the papers: the graph's nodes are the mapped layers (the papers embed the
network's full computational graph, down to its primitive operations), the embedding is computed once per batch of episodes from static
features rather than re-embedded after each action, and the actions are the layer's measured
candidates (scheme, block, sparsity, backend) rather than a channel-pruning ratio.

Measured (`python -m engine bench mapping --predicted --mappers rule,search,rl,gnn
--search-time 20 --seeds 0,1,2 [--objective max-proxy]`, cached host costs): at equal search
time it matches RLMapper under the default min-latency budget (both keep the rule seed) and
reaches a slightly lower proxy than RLMapper under a latency budget (ResNet-50 0.433 vs 0.449,
MobileNetV2 0.715 vs 0.719; evolution 0.479 / 0.733). At equal episodes (6000, 5 seeds,
ResNet-50, latency budget) RLMapper reached a proxy of 0.448, this agent on the node features
alone (no embedding) 0.441 and with the embedding 0.430, its encoder trained or frozen alike:
on these problems the embedding did not beat the hand-made per-layer features.

    plan = GNNMapper(episodes=2000, seed=0).map(problem)
    python -m engine optimize --model resnet50 --mapper gnn --search-time 60
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..plan import Plan
from .genome import GenomeSpace
from .graph_embed import GraphEncoder, layer_graph, node_features
from .policy import Adam, MaskedPolicy
from .rl import RLConfig, RLMapper, _Episodes


@dataclass(frozen=True)
class GNNConfig(RLConfig):
    """RLConfig (episodes, batch, time_budget, hidden, lr, seed, ...) plus the encoder's
    message-passing rounds; `hidden` is the embedding width and the policy's hidden width."""

    rounds: int = 2
    skip: bool = True          # the node's own features in its state, next to its embedding

    def __post_init__(self):
        super().__post_init__()
        if self.rounds < 1:
            raise ValueError(f"GNNConfig.rounds must be >= 1, got {self.rounds}")


class _GraphEpisodes(_Episodes):
    """The RL environment plus the layer graph and its node features; `static` (what a state
    starts with) is set to the current embedding before every batch of episodes."""

    def __init__(self, space: GenomeSpace, clip: bool):
        super().__init__(space, clip)
        self.graph = layer_graph(space.problem.layers)
        self.a_in, self.a_out = self.graph.adjacency()
        self.nodes = node_features(space.problem, space)


class GraphAgent:
    """Encoder + policy with MaskedPolicy's sample / grad / ascend, so RLMapper's rollout and
    update drive it unchanged. States are [h_t, g, budget state] with the rows of a batch
    ordered episode-major (row b * layers + t is episode b at layer t)."""

    def __init__(self, env: _GraphEpisodes, hidden: int, rounds: int, lr: float,
                 rng: np.random.Generator, skip: bool = True):
        self.env, self.lr, self.skip = env, lr, skip
        self.encoder = GraphEncoder(env.nodes.shape[1], hidden, rounds, rng)
        width = 2 * hidden + (env.nodes.shape[1] if skip else 0)
        self.policy = MaskedPolicy(width + env.n_dynamic, len(env.keys), hidden, rng, lr)
        self._adam = Adam(self.encoder.params)

    def embed(self) -> np.ndarray:
        """(layers, 2 * hidden [+ node features]): [h_i, g (, x_i)] per layer, from the
        current encoder."""
        H, g = self.encoder.forward(self.env.nodes, self.env.a_in, self.env.a_out)
        parts = [H, np.repeat(g[None], len(H), axis=0)] + ([self.env.nodes] if self.skip else [])
        return np.concatenate(parts, axis=1)

    def sample(self, X, mask, rng) -> np.ndarray:
        return self.policy.sample(X, mask, rng)

    def grad(self, X, mask, actions, weights, entropy: float = 0.0) -> dict:
        """MaskedPolicy.grad's objective, differentiated w.r.t. the policy's and (through the
        states' embedding part, as of the last `embed`) the encoder's parameters."""
        pol, dX = self.policy.backward(X, mask, actions, weights, entropy)
        d = self.encoder.hidden
        dX = dX.reshape(-1, self.env.graph.n, dX.shape[1])
        enc = self.encoder.backward(dX[:, :, :d].sum(axis=0), dX[:, :, d:2 * d].sum(axis=(0, 1)))
        return {"policy": pol, "encoder": enc}

    def ascend(self, grads: dict, scale: float = 1.0) -> None:
        self.policy.ascend(grads["policy"], scale)
        self._adam.step(grads["encoder"], self.lr, scale)


class GNNMapper(RLMapper):
    """RLMapper whose agent sees a graph embedding of the network (see the module docstring).
    GNNMapper(config, progress, **overrides): overrides replace GNNConfig fields."""

    name = "gnn"
    config_type = GNNConfig

    def _environment(self, space: GenomeSpace) -> _GraphEpisodes:
        env = _GraphEpisodes(space, self.config.clip_actions)
        self._graph = env.graph
        return env

    def _new_policy(self, env: _GraphEpisodes, rng) -> GraphAgent:
        cfg = self.config
        return GraphAgent(env, cfg.hidden, cfg.rounds, cfg.lr, rng, cfg.skip)

    def _rollout(self, policy: GraphAgent, env: _GraphEpisodes, B: int, rng) -> tuple:
        env.static = policy.embed()
        return super()._rollout(policy, env, B, rng)

    def _plan(self, problem, space, evaluate, best, origin, stats, clock) -> Plan:
        plan = super()._plan(problem, space, evaluate, best, origin, stats, clock)
        g = self._graph
        plan.meta["search"]["graph"] = {"nodes": g.n, "edges": len(g.edges), "source": g.source}
        return plan
