"""A stand-in for oxwhirl/smac's ``StarCraft2Env`` on 3s_vs_5z. It is NOT StarCraft II.

It follows SMAC's documented Python API and 3s_vs_5z's sizes so that ficomm's ``sc2`` adapter
(and the learner through it) can be tested where neither SMAC nor the game can be installed:
``get_env_info`` (3 agents, 11 actions, obs 48, state 68, limit 250), ``reset``, ``get_obs``,
``get_state``, ``get_avail_actions`` (lists of 0/1), ``step(actions) -> (reward, terminated,
info)`` with ``info["battle_won"]``, ``"dead_allies"``, ``"dead_enemies"`` and, with
``continuing_episode=True``, ``"episode_limit"``; ``get_stats``; ``close``. SMAC's action
layout is kept (0 no-op, only for dead agents; 1 stop; 2-5 moves; 6+ attack enemy i) and,
as in SMAC, choosing an unavailable action is an AssertionError.

The dynamics are a small random toy (attacks remove enemy health, enemies hit back at
random, moves are randomly blocked), chosen only so that episodes end in wins, losses and
time-outs; observations are random numbers with the right shapes.

Game crashes follow SMAC's code (``starcraft2.py``): a crash mid-step (``crash_next_step``)
relaunches the game (``full_restart``: close, launch, ``force_restarts += 1``) and returns
``(0, True, {})``; a crash while a reset observes the new episode (``crash_resets`` > 0) does
the same relaunch and then returns the observation anyway. Like SMAC, every reset before the
first episode has ended launches a game, and each such launch adds the enemies' health to
``max_reward`` (the reward scale), so a crash in the first episode inflates the scale.
"""

from __future__ import annotations

import numpy as np

N_AGENTS, N_ENEMIES = 3, 5
N_ACTIONS = 6 + N_ENEMIES  # no-op, stop, 4 moves, one attack per enemy
OBS_SIZE, STATE_SIZE, EPISODE_LIMIT = 48, 68, 250
ENEMY_HEALTH, REWARD_WIN, REWARD_SCALE_RATE = 4.0, 10.0, 20.0  # a fresh game's scale: 30


class StarCraft2EnvStandIn:
    """Stand-in for ``smac.env.StarCraft2Env(map_name="3s_vs_5z")``; not StarCraft II."""

    created: list[StarCraft2EnvStandIn] = []  # every instance, so tests can check close()

    def __init__(
        self,
        map_name: str = "3s_vs_5z",
        seed: int | None = None,
        continuing_episode: bool = False,
        episode_limit: int = EPISODE_LIMIT,
        crash_resets: int = 0,
        **_smac_kwargs,
    ):
        if map_name != "3s_vs_5z":
            raise ValueError("the stand-in only knows 3s_vs_5z")
        self.map_name = map_name
        self._seed = seed
        self.continuing_episode = continuing_episode
        self.episode_limit = episode_limit  # SMAC takes it from the map; a knob for tests
        self.launched = False
        self.closed = False
        StarCraft2EnvStandIn.created.append(self)
        self.steps_taken = 0
        self.battles_won = self.battles_game = self.timeouts = 0
        self.force_restarts = 0  # SMAC's count of relaunches after a crash
        self.launches = 0  # games started, the relaunches included
        self.crash_next_step = False  # the next step's game connection fails
        self.crash_resets = crash_resets  # so many coming resets have their connection fail
        self._episode_count = 0  # episodes ended normally, as SMAC counts them
        self.max_reward = REWARD_WIN  # SMAC: kills + win; each first-episode launch adds health

    def get_env_info(self) -> dict:
        return {
            "state_shape": STATE_SIZE,
            "obs_shape": OBS_SIZE,
            "n_actions": N_ACTIONS,
            "n_agents": N_AGENTS,
            "episode_limit": self.episode_limit,
        }

    def _launch(self) -> None:
        self._rng = np.random.default_rng(self._seed)  # SMAC seeds each game at launch
        self.launched = True
        self.launches += 1

    def _full_restart(self) -> None:
        self._launch()  # SMAC closes the old game first; the stand-in has no process
        self.force_restarts += 1

    def reset(self):
        if self._episode_count == 0:  # SMAC launches on every reset until an episode ends
            self._launch()
        self._t = 0
        self.ally_health = np.full(N_AGENTS, 3.0)
        self.enemy_health = np.full(N_ENEMIES, ENEMY_HEALTH)
        if self.crash_resets > 0:  # SMAC: observe() failed -> full_restart, obs returned anyway
            self.crash_resets -= 1
            self._full_restart()
        elif self._episode_count == 0:  # SMAC's init_units adds health until an episode ends
            self.max_reward += N_ENEMIES * ENEMY_HEALTH
        self._draw_masks()
        return self.get_obs(), self.get_state()

    def _draw_masks(self) -> None:
        rng = self._rng
        self._moves = rng.random((N_AGENTS, 4)) < 0.8
        self._in_range = rng.random((N_AGENTS, N_ENEMIES)) < 0.5

    def get_avail_agent_actions(self, agent_id: int) -> list[int]:
        if self.ally_health[agent_id] <= 0:
            return [1] + [0] * (N_ACTIONS - 1)  # only no-op for the dead
        mask = [0, 1, *self._moves[agent_id].astype(int).tolist()]
        mask += (self._in_range[agent_id] & (self.enemy_health > 0)).astype(int).tolist()
        return mask

    def get_avail_actions(self) -> list[list[int]]:
        return [self.get_avail_agent_actions(i) for i in range(N_AGENTS)]

    def get_obs(self) -> list[np.ndarray]:
        return [self._rng.random(OBS_SIZE, dtype=np.float32) for _ in range(N_AGENTS)]

    def get_state(self) -> np.ndarray:
        return self._rng.random(STATE_SIZE, dtype=np.float32)

    def step(self, actions):
        actions = [int(a) for a in actions]
        for a_id, action in enumerate(actions):  # the checks SMAC's get_agent_action makes
            avail = self.get_avail_agent_actions(a_id)
            assert avail[action] == 1, f"Agent {a_id} cannot perform action {action}"
            if action == 0:
                assert self.ally_health[a_id] == 0, "No-op only available for dead agents."
        if self.crash_next_step:  # SMAC: the controller raised -> full_restart, (0, True, {})
            self.crash_next_step = False
            self._full_restart()
            return 0, True, {}
        self.steps_taken += 1
        self._t += 1
        before = self.enemy_health.sum()
        for action in actions:
            if action >= 6:
                self.enemy_health[action - 6] -= 1.0
        self.enemy_health = np.maximum(self.enemy_health, 0.0)
        alive = np.flatnonzero(self.ally_health > 0)
        if alive.size and self._rng.random() < 0.15:
            self.ally_health[self._rng.choice(alive)] -= 1.0
        self.ally_health = np.maximum(self.ally_health, 0.0)
        reward = float(before - self.enemy_health.sum())

        info = {
            "battle_won": False,
            "dead_allies": int((self.ally_health <= 0).sum()),
            "dead_enemies": int((self.enemy_health <= 0).sum()),
        }
        terminated = False
        if info["dead_enemies"] == N_ENEMIES or info["dead_allies"] == N_AGENTS:
            terminated = True
            self.battles_game += 1
            if info["dead_enemies"] == N_ENEMIES and info["dead_allies"] < N_AGENTS:
                info["battle_won"] = True
                self.battles_won += 1
                reward += REWARD_WIN
        elif self._t >= self.episode_limit:
            terminated = True
            if self.continuing_episode:
                info["episode_limit"] = True
            self.battles_game += 1
            self.timeouts += 1
        if terminated:
            self._episode_count += 1
        self._draw_masks()
        return reward / (self.max_reward / REWARD_SCALE_RATE), terminated, info

    def get_stats(self) -> dict:
        return {
            "battles_won": self.battles_won,
            "battles_game": self.battles_game,
            "battles_draw": self.timeouts,
            "win_rate": self.battles_won / max(self.battles_game, 1),
            "timeouts": self.timeouts,
            "restarts": self.force_restarts,
        }

    def close(self) -> None:
        self.closed = True
