"""ficomm: independent recurrent Q-learners with and without parameter sharing and learned
communication, reproducing Pina et al. (2024), "Fully Independent Communication in
Multi-Agent Reinforcement Learning"."""

__version__ = "0.1.0"
